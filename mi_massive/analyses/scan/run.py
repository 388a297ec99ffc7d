"""The massive-activation scan: run a corpus, keep per-sequence statistics, detect, summarise.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> result = scan(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), progress=False)
>>> result.massive_coordinates(layer=1)
[(1, 0, 5)]

Only the requested hooks (default: the residual stream) are captured, one batch at a time, and each batch
is reduced to small statistics before the next runs, so a 64 x 512-token scan never holds a full cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD, Detection
from mi_massive.analyses.scan.reduce import HookBatch, reduce_batch
from mi_massive.core.stats import summarize
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.provenance import provenance
from mi_massive.analyses.scan.record import (MAX_MASSIVE_ENTRIES, MAX_NEAR_ENTRIES, EntryTally, LargestEntries,
                                             LayerPerSequence, LayerRecord, MassiveEntry, ScanResult)
from mi_massive.core.engine import iter_corpus
from mi_massive.core.fastpath import pick_route
from mi_massive.core.names import act_name, expand_hooks, resid_names, scan_hook_layer

DEFAULT_HOOKS_LABEL = "blocks.L.hook_resid_post (+ blocks.0.hook_resid_pre)"  # provenance of the default scan



def token_strings(model, sequences: list[list[int]]) -> list[list[str]]:
    """Per-token strings (each id decoded alone, as TransformerLens' ``to_str_tokens`` does)."""
    tok = model.tokenizer
    cache: dict[int, str] = {}
    out = []
    for seq in sequences:
        row = []
        for t in seq:
            if t not in cache:
                cache[t] = tok.decode([t])
            row.append(cache[t])
        out.append(row)
    return out


def _entry_arrays(parts: list[tuple[int, Detection]], offset: range) -> dict[str, np.ndarray]:
    """The flagged entries of several hooks of one batch as arrays: ``hooks`` (index into the scan's hook list),
    ``sequences`` (batch rows mapped to corpus sequence indices), ``positions``, ``dims``, ``values``."""
    rows = np.concatenate([d.rows for _, d in parts])
    return {"hooks": np.concatenate([np.full(len(d.values), i, np.int64) for i, d in parts]),
            "sequences": np.asarray(offset, dtype=np.int64)[rows],
            "positions": np.concatenate([d.positions for _, d in parts]),
            "dims": np.concatenate([d.dims for _, d in parts]),
            "values": np.concatenate([d.values for _, d in parts])}


def _entries(kept: LargestEntries, names: list[str], layer_of: dict[str, int], sequences, str_tokens,
             medians: dict[str, list[float]]) -> list[MassiveEntry]:
    """The kept entries as :class:`MassiveEntry` rows, in scan order (hook, sequence, position, dim)."""
    out = []
    for hook, seq, pos, dim, val in kept.rows():
        name = names[hook]
        out.append(MassiveEntry(layer=layer_of[name], hook=name, sequence=seq, position=pos,
                                dim=dim, value=val, token=str_tokens[seq][pos], token_id=sequences[seq][pos],
                                ratio_to_median=abs(val) / max(medians[name][seq], 1e-30)))
    return out


def scan(
    model,
    corpus: Corpus,
    *,
    top_k: int = 3,
    abs_threshold: float = ABS_THRESHOLD,
    rel_threshold: float = REL_THRESHOLD,
    batch_size: int | None = None,
    include_embed: bool = True,
    hooks: str | list[str] | None = None,
    progress: bool = True,
    options: dict[str, Any] | None = None,
) -> ScanResult:
    """Scan every block output (and the embeddings) of ``model`` over ``corpus``, or any hook points (``hooks``).

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> result = mm.scan(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)
    >>> s = result.summary
    >>> s.first_layer, s.dims[0].dim, [p.position for p in s.positions], round(result.massive[0].value)
    (1, 5, [0], 3000)

    Returns a :class:`~mi_massive.analyses.scan.record.ScanResult`: per hook (the embeddings are
    layer -1, then every block output ``blocks.L.hook_resid_post``) the statistics below, in
    residual-stream units (|h|), and every flagged entry with its signed value.

    Per hook and sequence: top-``top_k`` |h| with (position, dim), median |h| over real tokens,
    top-1/median ratio and per-dim max; aggregated over sequences (mean, std, 95% CI). Entries with
    |h| > ``abs_threshold`` and > ``rel_threshold`` x the layer median are listed as massive, those
    above only the absolute threshold as near-massive. See :mod:`mi_massive.analyses.scan.detect`.
    The lists keep the 10,000 massive and 2,000 near-massive entries of largest |h|, in scan order
    (hook, sequence, position, dim), whatever ``batch_size``; every count (summary, per layer, near total)
    covers all entries.
    ``batch_size`` None picks about 2,048 tokens per forward pass (:meth:`Corpus.auto_batch_size`).
    The forward pass is the plain ``transformers`` one (route ``"hf"``, :mod:`mi_massive.core.fastpath`)
    unless a hook is attached to the bridge or ``$MI_MASSIVE_ROUTE=bridge``; ``provenance.options.route`` says which ran.

    ``hooks`` (``mi-massive scan --hooks``, like Owen et al.'s ``--module_name``): hook kinds, names or glob
    patterns, comma-separated or a list (:func:`mi_massive.core.names.expand_hooks`): ``resid_post``
    (default; with the embeddings when ``include_embed``), ``resid_pre``, ``resid_mid``, ``attn_out``,
    ``mlp_out``, ``ln1`` / ``ln2`` / ``ln_final`` (the norm outputs, weight applied: ``blocks.L.ln1.hook_out``),
    ``attn.hook_q`` / ``attn.hook_k`` / ``attn.hook_v``, ``mlp.hook_post`` (the MLP's hidden activation,
    d_mlp wide), full names (``blocks.3.hook_mlp_out``) or patterns (``blocks.*.hook_mlp_out``). Each hook
    gets the same statistics and detection in its own units; a hook with a head axis (``attn.hook_q``:
    [batch, pos, head, d_head]) has it flattened into the feature axis, so an entry's ``dim`` is
    ``head * d_head + i``. ``layers[]`` has one record per hook (``hook``, ``label`` such as
    ``"block 2 mlp_out"``; ``ln_final`` is layer ``n_layers``). Only residual hooks take the fast ``"hf"``
    route; any other hook runs the bridge with its hook points.
    """
    if top_k < 1:
        raise MiMassiveError(f"top_k must be positive, got {top_k}")
    if abs_threshold < 0 or rel_threshold < 0:
        raise MiMassiveError("thresholds must be non-negative")
    shortest = min(corpus.lengths) * model.cfg.d_model
    if top_k > shortest:
        raise MiMassiveError(f"top_k={top_k} exceeds the number of entries of the shortest sequence ({shortest})")
    n_layers = model.cfg.n_layers
    default_names = resid_names(n_layers, include_embed=include_embed)
    names = default_names if hooks is None else expand_hooks(hooks, list(model.hook_dict), n_layers,
                                                             include_embed=include_embed)
    batch_size = batch_size or corpus.auto_batch_size()
    route = pick_route(model, names, route="auto")  # 'hf': plain transformers forward (core/fastpath.py); 'bridge': hooks
    opts = {"top_k": top_k, "abs_threshold": abs_threshold, "rel_threshold": rel_threshold,
            "include_embed": include_embed, "hooks": DEFAULT_HOOKS_LABEL if names == default_names else names,
            "route": route, **(options or {})}
    host: dict[str, Any] = {}

    def host_work() -> None:  # needs no activation: done while the device runs the first batch
        if not host:
            host.update(str_tokens=token_strings(model, corpus.sequences),
                        provenance=provenance(model, corpus, options=opts))
    per_hook: dict[str, dict[str, list]] = {n: {"top_values": [], "top_positions": [], "top_dims": [],
                                                "median": [], "ratio": []} for n in names}
    dim_max: dict[str, np.ndarray] = {}
    # stored entries are capped (the largest |h|), counts are exact: thresholds of 0/0 flag every coordinate
    kept_massive, kept_near, tally = LargestEntries(MAX_MASSIVE_ENTRIES), LargestEntries(MAX_NEAR_ENTRIES), EntryTally()
    n_massive = {n: 0 for n in names}
    massive_dims: dict[str, set[int]] = {n: set() for n in names}
    near_total = 0
    layer_of = {name: scan_hook_layer(name, n_layers)[0] for name in names}
    hook_layers = np.array([layer_of[name] for name in names], dtype=np.int64)

    def absorb(indices: range, reduced: dict[str, HookBatch]) -> None:
        """Fold one batch's statistics into the running records (host only: reads nothing from the device)."""
        nonlocal near_total
        flagged: dict[str, list[tuple[int, Detection]]] = {"massive": [], "near": []}
        for hook_index, name in enumerate(names):
            stats, rec = reduced[name], per_hook[name]
            rec["top_values"] += stats.top_values.tolist()
            rec["top_positions"] += stats.top_positions.tolist()
            rec["top_dims"] += stats.top_dims.tolist()
            rec["median"] += stats.median.tolist()
            rec["ratio"] += stats.ratio.tolist()
            # one float per feature (d_model for the residual)
            dim_max[name] = np.maximum(dim_max[name], stats.dim_max) if name in dim_max else stats.dim_max
            for kind in flagged:
                if len(getattr(stats, kind).values):
                    flagged[kind].append((hook_index, getattr(stats, kind)))
            if len(stats.massive.values):
                n_massive[name] += len(stats.massive.values)
                massive_dims[name].update(np.unique(stats.massive.dims).tolist())
            near_total += len(stats.near.values)
        if flagged["near"]:
            kept_near.add(**_entry_arrays(flagged["near"], indices))
        if flagged["massive"]:  # one batch of every hook's massive entries
            entries = _entry_arrays(flagged["massive"], indices)
            kept_massive.add(**entries)
            rows = entries["sequences"] - indices.start  # back to batch rows
            token_ids = corpus.batch(indices)[0].numpy()[rows, entries["positions"]]
            order = np.stack([entries["hooks"], entries["sequences"], entries["positions"], entries["dims"]], axis=1)
            tally.add(layers=hook_layers[entries["hooks"]], token_ids=token_ids, order=order,
                      **{k: v for k, v in entries.items() if k != "hooks"})

    previous: tuple[range, dict[str, HookBatch]] | None = None
    for indices, _ids, mask, _logits, acts in iter_corpus(model, corpus, names, batch_size=batch_size, route="auto",
                                                           progress="scan" if progress else False, to_float32=False,
                                                           check=False):
        if previous:  # the previous batch's host work, while the device runs this batch's forward
            absorb(*previous)
        previous = (indices, reduce_batch(acts, names, mask, lengths=[corpus.lengths[i] for i in indices],
                                          top_k=top_k, abs_threshold=abs_threshold, rel_threshold=rel_threshold,
                                          while_queued=host_work))
        del acts
    if previous:
        absorb(*previous)
    str_tokens = host["str_tokens"]
    medians = {name: per_hook[name]["median"] for name in names}
    massive = _entries(kept_massive, names, layer_of, corpus.sequences, str_tokens, medians)
    near = _entries(kept_near, names, layer_of, corpus.sequences, str_tokens, medians)
    id_to_string = {t: s for seq, strs in zip(corpus.sequences, str_tokens) for t, s in zip(seq, strs)}
    layers = []
    for name in names:
        layer, label = scan_hook_layer(name, n_layers)
        rec = per_hook[name]
        tops = list(zip(*rec["top_values"]))
        top_summ = [summarize(col) for col in tops]
        med, rat = summarize(rec["median"]), summarize(rec["ratio"])
        layers.append(LayerRecord(
            layer=layer, hook=name, label=label,
            top_values=[s.mean for s in top_summ], top_values_std=[s.std for s in top_summ],
            top_values_ci95=[[s.ci_low, s.ci_high] for s in top_summ],
            median=med.mean, median_std=med.std, median_ci95=[med.ci_low, med.ci_high],
            ratio=rat.mean, ratio_std=rat.std, ratio_ci95=[rat.ci_low, rat.ci_high],
            top1_max=max(tops[0]), dim_max=dim_max[name].tolist(), per_sequence=LayerPerSequence(**rec),
            n_massive=n_massive[name], massive_dims=sorted(massive_dims[name]),
        ))
    return ScanResult(
        provenance=host["provenance"], tokens=corpus.sequences, str_tokens=str_tokens,
        layers=layers, massive=massive, near_massive=near, near_massive_total=near_total,
        summary=tally.summary(len(corpus), id_to_string.__getitem__),
    )


SUN_SENTENCE = "Summer is warm. Winter is cold."


def feature_view_layer(result: ScanResult) -> int | None:
    """The block to show in the 3-D view: the first block output with a massive entry, else the block output
    with the largest top-1; None when the scan has no block output (``hooks`` without ``resid_post``)."""
    blocks = result.block_layers
    if not blocks:
        return None
    massive = [r.layer for r in blocks if r.n_massive]
    if massive:
        return min(massive)
    return max(blocks, key=lambda r: r.top_values[0]).layer


def sentence_activations(model, text: str, layer: int, *, prepend_bos: bool):
    """(|h| source tensor [pos, d_model] of ``blocks.{layer}.hook_resid_post``, token strings) for one text."""
    from mi_massive.core.corpus import text_corpus
    from mi_massive.core.engine import run_capture

    corpus = text_corpus(model, text, prepend_bos=prepend_bos)
    ids = torch.tensor(corpus.sequences)
    name = act_name("resid_post", layer)
    _, acts = run_capture(model, ids, [name], route="auto")
    return acts[name][0], token_strings(model, corpus.sequences)[0]
