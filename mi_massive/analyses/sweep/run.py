"""Single-component ablation sweep over every head (and every MLP), fast and resumable.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> corpus = mm.text_corpus(model, ["The cat sat on the mat.", "A dog ran."], prepend_bos=True)
>>> res = mm.sweep(model, corpus, [(1, 0, 5)], mlps=True, progress=False)
>>> len(res.effect), len(res.effect[0]), round(res.baseline[0][0])   # [layer][head][metric]; h_1[0, 5]
(3, 4, 3000)
>>> round(res.mlp_effect[1][0]) < -1000   # removing MLP 1 removes the planted massive value
True

For every (layer L, head h) the metrics are recomputed with head h of layer L ablated at
``blocks.L.attn.hook_z``. Metrics: signed residual entries h_l[pos, dim] (``entry L{l} p{pos} d{dim}``
at ``blocks.l.hook_resid_post``) and, optionally, the mean next-token loss (nats).

Two methods give the same numbers (to float rounding; tested to 1e-4 relative):

* ``naive``: one forward pass per head through :func:`mi_massive.core.engine.run_capture`.
* ``fast`` (:func:`mi_massive.core.engine.record_block_calls` + :func:`~mi_massive.core.engine.run_blocks_from`):
  (1) one clean pass records, for every block, its input residual and the other call
  arguments the model passes it (attention mask, rotary embeddings, ...); (2) for layer L, the
  cached residual entering block L is repeated once per head and only blocks L.. are run (the
  blocks before L are never recomputed); (3) batch row r of that forward ablates head ``r``
  (:func:`mi_massive.core.hooks.per_row_head_ablation`), so one forward covers a whole layer. Blocks
  after the last tracked layer are skipped unless the loss is needed. Heads in layers after every
  tracked entry cannot change it: they get the baseline without any forward (both methods).

With ``mlps=True`` every MLP sublayer (``blocks.L.hook_mlp_out``, b_out included) is also ablated
alone, one forward per (batch, layer) starting at block L from the cached residual (``mlp_values``,
``mlp_effect``). Modes: ``zero`` and ``mean`` (reference means per position class, from
:func:`mi_massive.core.hooks.reference_means` at the hook_z / hook_mlp_out names) for heads and MLPs,
with both methods; ``resample`` is not supported by the sweep (use ``mm.ablate`` with donors).

Long sweeps show one tqdm bar and, with ``out_path``, write partial results atomically after each
(batch, layer) unit; rerunning with the same options resumes and recomputes nothing done.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import einops
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import ablate_heads, ablate_mlps, check_layers, check_mode, per_row_head_ablation
from mi_massive.core.names import EMBED_HOOK, act_name, hook_layer
from mi_massive.analyses.sweep.record import SweepResult
from mi_massive.core.io import atomic_write_text, read_json
from mi_massive.core.provenance import provenance
from mi_massive.core.stats import sequence_loss  # noqa: F401 (the one NLL; analyses.patch imports it from here)
from mi_massive.core.engine import record_block_calls, run_blocks_from, run_capture

Entry = tuple[int, int, int]  # (layer, position, dim)


def entry_label(entry: Entry) -> str:
    return f"entry L{entry[0]} p{entry[1]} d{entry[2]}"


def check_entries(model, entries: Sequence[Entry]) -> list[Entry]:
    entries = [tuple(int(v) for v in e) for e in entries]
    for layer, pos, dim in entries:
        check_layers(model, [layer])
        if not 0 <= dim < model.cfg.d_model:
            raise MiMassiveError(f"dim {dim} out of range: d_model is {model.cfg.d_model}")
        if pos < 0:
            raise MiMassiveError(f"position {pos} must be non-negative")
    return entries


# ----------------------------------------------------------------------------- metrics (pure)
def metric_values(acts: dict[str, torch.Tensor], entries: Sequence[Entry], loss: torch.Tensor | None,
                  n_rows: int) -> Float[torch.Tensor, "rows metric"]:
    """[rows, n_metrics]: each tracked entry's signed value (then the loss if given)."""
    cols = []
    for layer, pos, dim in entries:
        h = acts[act_name("resid_post", layer)]
        if pos >= h.shape[1]:
            raise MiMassiveError(f"position {pos} is beyond the sequence length {h.shape[1]}")
        cols.append(h[:, pos, dim].float())
    if loss is not None:
        cols.append(loss.float())
    return torch.stack(cols, 1) if cols else torch.zeros(n_rows, 0)


# --------------------------------------------------------------------------------------- the sweep
def _options_key(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


class _Partial:
    """Atomic partial-results file: ``{"key", "units": {"b{start}:L{layer}": [[...]]}}``."""

    def __init__(self, path: Path | None, key: str, options: dict[str, Any]):
        self.path, self.key, self.units = path, key, {}
        if path is not None and path.exists():
            data = read_json(path)
            if data.get("key") != key:
                raise MiMassiveError(f"{path} holds a sweep with other options; delete it or choose another path")
            self.units = data["units"]
        self.options = options

    def done(self, unit: str) -> bool:
        return unit in self.units

    def put(self, unit: str, values: list) -> None:
        self.units[unit] = values
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({"key": self.key, "options": self.options, "units": self.units}))


def sweep(
    model,
    corpus: Corpus,
    entries: Sequence[Entry],
    *,
    loss: bool = False,
    mlps: bool = False,
    mode: str = "zero",
    means: dict[str, torch.Tensor] | None = None,
    method: str = "fast",
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    max_rows: int = 96,
    truncate: bool = True,
    partial_path: str | Path | None = None,
    progress: bool = True,
) -> SweepResult:
    """Ablate every head (and, with ``mlps``, every MLP) of ``layers`` (default: all) one at a time.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> corpus = mm.text_corpus(model, "The cat sat.", prepend_bos=False)
    >>> res = sweep(model, corpus, [(2, 0, 5)], progress=False)
    >>> res.metric_names, len(res.values[0])   # one entry; [layer][head][sequence][metric]
    (['entry L2 p0 d5'], 4)

    See the module docstring. ``entries``: (layer, position, dim) residual entries tracked (signed
    values at ``blocks.L.hook_resid_post``); ``loss``: also the mean next-token loss (nats).
    ``mode``: ``zero`` or ``mean`` (``means`` from :func:`mi_massive.core.hooks.reference_means` at the
    hook_z names, and the hook_mlp_out names for ``mlps``). ``max_rows`` caps the rows of one fast forward (heads x sequences).
    ``truncate`` (fast method, no loss): run only positions 0..max tracked position -- exact in a
    causal model, where h[t] depends on tokens <= t only; a position-0 entry needs one token.
    ``partial_path``: where partial results go (resume file); the result itself is returned.
    """
    check_mode(mode)
    if mode == "resample":
        raise MiMassiveError("the sweep supports zero and mean ablation (resample: use mm.ablate with donors)")
    if method not in ("fast", "naive"):
        raise MiMassiveError(f"unknown sweep method '{method}'; use fast or naive")
    entries = check_entries(model, entries)
    if not entries and not loss:
        raise MiMassiveError("nothing to measure: give at least one entry or loss=True")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    layers = check_layers(model, range(n_layers) if layers is None else layers)
    if mode == "mean":
        need = [act_name("z", layer) for layer in layers] + ([act_name("mlp_out", layer) for layer in layers]
                                                             if mlps else [])
        missing = [name for name in need if name not in (means or {})]
        if missing:
            raise MiMassiveError(f"mean ablation needs reference means for {missing[0]}")
    names = sorted({act_name("resid_post", e[0]) for e in entries}, key=lambda n: hook_layer(n)[0])
    last_entry = max((e[0] for e in entries), default=-1)
    last_needed = n_layers - 1 if loss else last_entry
    metric_names = [entry_label(e) for e in entries] + (["loss"] if loss else [])
    options = {"entries": [list(e) for e in entries], "loss": loss, "mode": mode, "layers": layers, "method": method,
               **({"mlps": True} if mlps else {}),
               "batch_size": batch_size, "corpus": corpus.describe(),
               "model": getattr(getattr(model, "mi_massive_info", None), "fingerprint", model.cfg.model_name)}
    partial = _Partial(Path(partial_path) if partial_path else None, _options_key(options), options)
    batches = list(corpus.batches(batch_size))
    kinds = ["L", "M"] if mlps else ["L"]  # unit keys: heads of a layer (L), the MLP of a layer (M)
    total_units = len(batches) * len(layers) * len(kinds)
    todo = sum(1 for idx, _, _ in batches for layer in layers for k in kinds if not partial.done(f"b{idx.start}:{k}{layer}"))
    what = "heads and MLPs" if mlps else "heads"
    bar = tqdm(total=total_units, initial=total_units - todo, unit="unit", disable=not progress, leave=False,
               desc=f"sweep: {len(layers) * n_heads} heads{f' + {len(layers)} MLPs' if mlps else ''} x "
                    f"{len(corpus)} seq ({method}, {mode}; units = batch x layer x {what})")
    per_mlp: dict[tuple[int, int], list] = {}
    start = time.perf_counter()
    baseline_rows: list[torch.Tensor] = []
    per_unit: dict[tuple[int, int], list] = {}
    width = max(e[1] for e in entries) + 1 if entries else None
    for idx, ids, mask in batches:
        n = len(idx)
        if method == "fast" and truncate and not loss:
            ids, mask = ids[:, :width], mask[:, :width]
        rec_layers = list(range(min(layers), last_needed + 1))
        with record_block_calls(model, rec_layers if method == "fast" else []) as calls:
            logits, acts = run_capture(model, ids, names or [EMBED_HOOK], need_logits=loss,
                                       mask=mask)
        base = metric_values(acts, entries, sequence_loss(logits, ids, mask) if loss else None, n)
        baseline_rows.append(base.cpu())  # small: [seq, metric]
        for layer in layers:
            unit = f"b{idx.start}:L{layer}"
            if partial.done(unit):
                per_unit[(idx.start, layer)] = partial.units[unit]
                continue
            if layer > last_needed:  # cannot reach any tracked entry: exactly the baseline
                vals = einops.repeat(base, "s m -> h s m", h=n_heads).clone()
            elif method == "naive":
                vals = torch.stack([_naive_one(model, ids, mask, names, entries, loss, layer, h, mode, means)
                                    for h in range(n_heads)])
            else:
                vals = _fast_layer(model, ids, mask, calls, names, entries, loss, layer, n_heads, mode, means,
                                   max_rows, last_needed)
            # entries in layers before the ablated one are unaffected (and not captured by fast)
            early = [i for i, e in enumerate(entries) if e[0] < layer]
            vals[:, :, early] = base[None, :, early]
            partial.put(unit, vals.tolist())
            per_unit[(idx.start, layer)] = vals.tolist()
            bar.update(1)
        for layer in layers if mlps else []:
            unit = f"b{idx.start}:M{layer}"
            if partial.done(unit):
                per_mlp[(idx.start, layer)] = partial.units[unit]
                continue
            if layer > last_needed:
                vals = base.clone()
            else:
                vals = _mlp_one(model, ids, mask, calls, names, entries, loss, layer, mode, means, method, last_needed)
            early = [i for i, e in enumerate(entries) if e[0] < layer]
            vals[:, early] = base[:, early]
            partial.put(unit, vals.tolist())
            per_mlp[(idx.start, layer)] = vals.tolist()
            bar.update(1)
    bar.close()
    baseline = torch.cat(baseline_rows)
    values = torch.full((n_layers, n_heads, len(corpus), len(metric_names)), float("nan"))
    for (s, layer), v in per_unit.items():
        v = torch.tensor(v)
        values[layer, :, s:s + v.shape[1]] = v
    effect = (values - baseline[None, None]).mean(2)
    mlp_values = mlp_effect = None
    if mlps:
        mv = torch.full((n_layers, len(corpus), len(metric_names)), float("nan"))
        for (s, layer), v in per_mlp.items():
            v = torch.tensor(v)
            mv[layer, s:s + v.shape[0]] = v
        mlp_values, mlp_effect = mv.tolist(), (mv - baseline[None]).mean(1).tolist()
    return SweepResult(
        provenance={**provenance(model, corpus, options={k: v for k, v in options.items() if k != "corpus"}),
                    "timing": {"seconds": time.perf_counter() - start}},
        metric_names=metric_names, mode=mode, method=method, baseline=baseline.tolist(), values=values.tolist(),
        effect=effect.tolist(), mlp_values=mlp_values, mlp_effect=mlp_effect,
    )


head_sweep = sweep  # the earlier name


def _mlp_one(model, ids, mask, calls, names, entries, loss, layer, mode, means, method, last_needed) -> torch.Tensor:
    """[seq, metric] with the MLP of ``layer`` ablated (fast: from the cached residual entering block ``layer``)."""
    hooks = ablate_mlps(model, [layer], mode, means=means)
    if method == "naive":
        logits, acts = run_capture(model, ids, names or [EMBED_HOOK], fwd_hooks=hooks, need_logits=loss, mask=mask)
    else:
        later = [nm for nm in names if hook_layer(nm)[0] >= layer]
        logits, acts = run_blocks_from(model, layer, calls[layer][0][0], calls, ids.shape[0], later, fwd_hooks=hooks,
                                       last_layer=last_needed, need_logits=loss)
        start = calls[layer][0][0]  # the cached residual entering block ``layer``, on that block's device
        acts = {**{nm: torch.zeros(ids.shape[0], ids.shape[1], model.cfg.d_model, device=start.device) for nm in names},
                **acts}
    return metric_values(acts, entries, sequence_loss(logits, ids, mask) if loss else None, ids.shape[0])


def _naive_one(model, ids, mask, names, entries, loss, layer, head, mode, means) -> torch.Tensor:
    hooks = ablate_heads(model, [(layer, head)], mode, means=means)
    logits, acts = run_capture(model, ids, names or [EMBED_HOOK], fwd_hooks=hooks,
                               need_logits=loss, mask=mask)
    return metric_values(acts, entries, sequence_loss(logits, ids, mask) if loss else None, ids.shape[0])


def _fast_layer(model, ids, mask, calls, names, entries, loss, layer, n_heads, mode, means, max_rows,
                last_needed) -> Float[torch.Tensor, "head seq metric"]:
    n = ids.shape[0]
    hidden = calls[layer][0][0]
    later = [nm for nm in names if hook_layer(nm)[0] >= layer]
    per_chunk = max(1, max_rows // n)
    out = []
    for first in range(0, n_heads, per_chunk):
        heads = torch.arange(first, min(n_heads, first + per_chunk))
        r = len(heads)
        row_heads = einops.repeat(heads, "r -> (r s)", s=n)
        hooks = per_row_head_ablation(layer, row_heads, mode, mean=(means or {}).get(act_name("z", layer)))
        logits, acts = run_blocks_from(model, layer, einops.repeat(hidden, "s p d -> (r s) p d", r=r), calls, n,
                                       later, fwd_hooks=hooks, last_layer=last_needed, need_logits=loss)
        acts = {**{nm: torch.zeros(r * n, ids.shape[1], model.cfg.d_model, device=hidden.device) for nm in names},
                **acts}
        row_loss = None
        if loss:
            row_loss = sequence_loss(logits, einops.repeat(ids, "s p -> (r s) p", r=r),
                                     einops.repeat(mask, "s p -> (r s) p", r=r))
        vals = metric_values(acts, entries, row_loss, r * n)
        out.append(einops.rearrange(vals, "(r s) m -> r s m", r=r))
    return torch.cat(out)
