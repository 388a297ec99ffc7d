"""Sun/Owen interventions on massive activations, measured by perplexity (spec §1.4, §2.5, §4, §5.2).

Steps (every number is recomputed for the model at hand; nothing is hard-coded):

1. **Calibration** (text disjoint from the evaluation chunks): scan it and choose the **targets**: with
   ``targets="each"`` (default) every massive dim d at its OWN first massive layer L_d (dims sharing a
   first layer form one target); with ``targets="earliest"`` only the first massive layer L and the
   dims massive there (the behaviour before multi-dim targets; also what ``layer=`` does). Per target:
   the massive positions of each calibration sequence at L_t; then the signed mean of h_l[t, d] for every
   layer l >= L_t, position class (start = position 0, other) and d in D_t, over the same (position x
   dim) cross product the edit will touch. Ordinary dims (|h| never above the absolute threshold in any
   layer) are the pool for the control.
2. **Evaluation**: a clean pass over the evaluation chunks gives the original perplexity and each
   chunk's own massive positions at each target layer L_t (same rule, per sequence).
3. **Conditions**, each with the same chunks and BOS convention: set each target's entries to zero / to
   the calibration mean at L_t only ("one layer"), or at every layer from L_t to the last layer where
   its dims are massive ("every layer"); the control zeroes |D_t| random ordinary dims at the same
   positions and layers, per target (several seeds). Per run: per-chunk NLL, perplexity with a bootstrap CI over chunks, the paired
   ratio to the original, and the regeneration profile (does a later block write the value back?).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from mi_massive.core.stats import chunk_nll, paired_ratio_ci, ppl_with_ci
from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD, detect
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.intervention import EntryEdit, control_dims, entry_edit, layer_hooks
from mi_massive.analyses.scan.run import scan
from mi_massive.core.provenance import provenance
from mi_massive.analyses.intervene.record import (Calibration, Evaluation, InterventionResult, InterventionRun,
                                                  InterventionTarget, PplRow, VisionInterventionResult, VisionRun)
from mi_massive.core.loading.vit import is_vision
from mi_massive.core.stats import bootstrap_ci
from mi_massive.core.names import OTHER, START, act_name, act_pattern, position_class
from mi_massive.analyses.scan.record import ScanResult
from mi_massive.core.engine import iter_corpus

Coords = dict[int, list[int]]  # sequence index -> massive positions


def split_corpus(corpus: Corpus, n_eval: int) -> tuple[Corpus, Corpus]:
    """(evaluation, calibration): the first ``n_eval`` windows and the rest; disjoint windows of one text."""
    if not 0 < n_eval < len(corpus):
        raise MiMassiveError(f"cannot split {len(corpus)} windows into {n_eval} evaluation + at least 1 calibration")
    return corpus.subset(list(range(n_eval))), corpus.subset(list(range(n_eval, len(corpus))))


def check_disjoint(eval_corpus: Corpus, calib_corpus: Corpus) -> None:
    """Refuse calibration text that repeats an evaluation window (same source and identical tokens)."""
    if eval_corpus.prepend_bos != calib_corpus.prepend_bos:
        raise MiMassiveError("calibration and evaluation corpora must use the same BOS convention")
    if eval_corpus.source.get("sha256") == calib_corpus.source.get("sha256"):
        seen = {tuple(s) for s in eval_corpus.sequences}
        if any(tuple(s) in seen for s in calib_corpus.sequences):
            raise MiMassiveError("calibration windows overlap the evaluation windows; use split_corpus or another text")


def first_layer_and_dims(result: ScanResult, layer: int | None = None) -> tuple[int, list[int]]:
    """The first massive block (or ``layer``) and the dims massive there in any calibration sequence."""
    if layer is None:
        layer = result.summary.get("first_layer")
        if layer is None:
            raise MiMassiveError("no massive activation in the calibration corpus: nothing to intervene on")
    dims = sorted({e.dim for e in result.massive if e.layer == layer})
    if not dims:
        raise MiMassiveError(f"no massive entry at layer {layer} in the calibration corpus")
    return int(layer), dims


TARGET_MODES = ("each", "earliest")


def choose_targets(result: ScanResult, targets: str = "each", layer: int | None = None) -> list[tuple[int, list[int]]]:
    """[(layer, dims)] to intervene on, by layer: ``"each"`` = every massive dim at its own first massive layer,
    ``"earliest"`` = the first massive layer and its dims only; ``layer`` given: that layer and its dims."""
    if targets not in TARGET_MODES:
        raise MiMassiveError(f"unknown targets '{targets}' (each, earliest)")
    if layer is not None or targets == "earliest":
        return [first_layer_and_dims(result, layer)]
    first_layer_and_dims(result)  # the same error as before when nothing is massive
    first: dict[int, int] = {}
    for e in result.massive:
        first[e.dim] = min(e.layer, first.get(e.dim, e.layer))
    by_layer: dict[int, list[int]] = defaultdict(list)
    for d, l in first.items():
        by_layer[l].append(int(d))
    return [(int(l), sorted(ds)) for l, ds in sorted(by_layer.items())]


def last_massive_layer(result: ScanResult, dims: Sequence[int]) -> int:
    """The last block where any of ``dims`` is massive in the calibration corpus."""
    return max(e.layer for e in result.massive if e.dim in set(dims))


def positions_at(result: ScanResult, layer: int, dims: Sequence[int]) -> Coords:
    """Massive positions per sequence at ``layer`` (a position counts if any of ``dims`` is massive there)."""
    out: dict[int, set[int]] = defaultdict(set)
    for e in result.massive:
        if e.layer == layer and e.dim in set(dims):
            out[e.sequence].add(e.position)
    return {s: sorted(p) for s, p in out.items()}


def ordinary_dim_pool(result: ScanResult, abs_threshold: float) -> list[int]:
    """Dims whose |h| stays at or below ``abs_threshold`` in every block and sequence (control pool)."""
    worst = torch.stack([torch.tensor(r.dim_max) for r in result.layers]).amax(0)
    return [int(d) for d in torch.nonzero(worst <= abs_threshold).flatten()]


def _batch_coords(indices: range, coords: Coords) -> list[tuple[int, int]]:
    return [(row, pos) for row, seq in enumerate(indices) for pos in coords.get(seq, [])]


def calibration_means(model, corpus: Corpus, coords: Coords, dims: Sequence[int], layers: Sequence[int], *,
                      batch_size: int = 4, progress: bool = True) -> dict[tuple[int, str, int], tuple[float, int]]:
    """Signed mean of h_l[t, d] over the calibration massive positions x ``dims``: {(layer, class, dim): (mean, n)}."""
    names = [act_name("resid_post", l) for l in layers]
    sums: dict[tuple[int, str, int], float] = defaultdict(float)
    counts: dict[tuple[int, str, int], int] = defaultdict(int)
    for indices, _ids, _mask, _lg, acts in iter_corpus(model, corpus, names, batch_size=batch_size,
                                                       progress="calibration means" if progress else False):
        for row, pos in _batch_coords(indices, coords):
            for layer, name in zip(layers, names):
                for d in dims:
                    key = (layer, position_class(pos), int(d))
                    sums[key] += float(acts[name][row, pos, d])
                    counts[key] += 1
    return {k: (sums[k] / counts[k], counts[k]) for k in sums}


def _means_for_layer(means: dict[tuple[int, str, int], tuple[float, int]], layer: int, dims: Sequence[int],
                     missing: list[str]) -> dict[tuple[str, int], float]:
    """{(class, dim): mean} of one layer; a class never seen in calibration borrows the other class's mean
    (recorded in ``missing``, never silent)."""
    out = {}
    for d in dims:
        for cls, alt in ((START, OTHER), (OTHER, START)):
            if (layer, cls, d) in means:
                out[(cls, d)] = means[(layer, cls, d)][0]
            elif (layer, alt, d) in means:
                out[(cls, d)] = means[(layer, alt, d)][0]
                missing.append(f"layer {layer} dim {d}: no '{cls}' calibration positions, used the '{alt}' mean")
    return out


def _capture_names(model, layers: Sequence[int]) -> list[str]:
    """Per layer, what rebuilds the block's own output before an edit: resid_mid + mlp_out, or in a parallel
    block (GPT-NeoX, GPT-J, Falcon: no resid_mid) resid_pre + attn_out + mlp_out; then resid_post."""
    names = []
    for l in layers:
        if act_name("resid_mid", l) in model.hook_dict:
            names += [act_name("resid_mid", l), act_name("mlp_out", l), act_name("resid_post", l)]
        else:
            names += [act_name("resid_pre", l), act_name("attn_out", l), act_name("mlp_out", l),
                      act_name("resid_post", l)]
    return names


class _Regen:
    """Accumulates mean |h| at edited entries per layer and class: clean, block-computed (pre-edit), post-edit."""

    def __init__(self) -> None:
        self.sum: dict[tuple, float] = defaultdict(float)
        self.n: dict[tuple, int] = defaultdict(int)

    def add(self, acts: dict[str, torch.Tensor], layers: Sequence[int], entries: list[tuple[int, int, int]]) -> None:
        for l in layers:
            post = acts[act_name("resid_post", l)]
            mid = acts.get(act_name("resid_mid", l))
            if mid is None:  # parallel block: both sublayers read resid_pre and add into it
                mid = acts[act_name("resid_pre", l)] + acts[act_name("attn_out", l)]
            pre = mid + acts[act_name("mlp_out", l)]
            for row, pos, d in entries:
                cls = position_class(pos)
                for kind, t in (("pre", pre), ("post", post)):
                    v = abs(float(t[row, pos, d]))
                    for key in ((kind, l, cls), (kind, l, cls, d)):
                        self.sum[key] += v
                        self.n[key] += 1

    def _means(self, layers: Sequence[int], *key: Any) -> dict[str, list[float | None]]:
        return {kind: [self.sum[(kind, l, *key)] / self.n[(kind, l, *key)] if self.n[(kind, l, *key)] else None
                       for l in layers] for kind in ("pre", "post")}

    def table(self, layers: Sequence[int]) -> dict[str, dict[str, Any]]:
        """{class: {"pre": [...], "post": [...], "per_dim": {dim: {"pre", "post"}}}}: mean |h| per layer over the
        class's entries (all massive dims pooled, and per dim); None where there are no entries."""
        out: dict[str, dict[str, Any]] = {}
        dims = sorted({k[3] for k in self.n if len(k) == 4})
        for cls in (START, OTHER):
            row: dict[str, Any] = self._means(layers, cls)
            if any(v is not None for v in row["pre"]):
                row["per_dim"] = {str(d): self._means(layers, cls, d) for d in dims}
                out[cls] = row
        return out


def _concat(edits: list[EntryEdit]) -> EntryEdit:
    """One edit applying all of ``edits`` (targets that share a layer touch different dims)."""
    if len(edits) == 1:
        return edits[0]
    return EntryEdit(*(torch.cat([getattr(e, f) for e in edits]) for f in ("rows", "positions", "dims", "values")))


def _edit_hooks(plan: list[tuple[int, dict[int, list[int]]]], coords: dict[int, Coords], mode: str,
                means_by_layer: dict[int, dict[tuple[str, int], float]]):
    """``fwd_hooks`` for :func:`iter_corpus`: per batch, one edit per layer of ``plan`` (per target: its layer
    L_t and {edited layer: dims}) at the batch's positions ``coords[L_t]``, to zero or to ``means_by_layer``."""
    def hooks(indices: range):
        per_layer: dict[int, list[EntryEdit]] = defaultdict(list)
        for tl, dims_by_layer in plan:
            bc = _batch_coords(indices, coords.get(tl, {}))
            for l, dims in dims_by_layer.items():
                per_layer[l].append(entry_edit(bc, dims, mode=mode, means=means_by_layer.get(l)))
        return layer_hooks({l: _concat(e) for l, e in per_layer.items()})
    return hooks


def _n_edited(plan: list[tuple[int, dict[int, list[int]]]], coords: dict[int, Coords], indices: range) -> int:
    """How many (position, dim, layer) entries :func:`_edit_hooks` edits in the batch ``indices``."""
    return sum(len(_batch_coords(indices, coords.get(tl, {}))) * len(d) for tl, dl in plan for d in dl.values())


def _plan_dims(plan: list[tuple[int, dict[int, list[int]]]]) -> list[int]:
    return sorted({d for _, dl in plan for ds in dl.values() for d in ds})


def _detect_targets(coords: dict[int, Coords], acts: dict[str, torch.Tensor], mask: torch.Tensor, indices: range,
                    targets: list[tuple[int, list[int]]], thresholds: tuple[float, float]) -> None:
    """Write each target's massive positions in this batch (clean run; its block output) into ``coords``."""
    for tl, tdims in targets:
        coords.setdefault(tl, {}).update(_detect_positions(acts[act_name("resid_post", tl)], mask, indices, tdims,
                                                           *thresholds))


def _eval_run(model, corpus: Corpus, coords: dict[int, Coords], plan: list[tuple[int, dict[int, list[int]]]],
              mode: str, means_by_layer: dict[int, dict[tuple[str, int], float]], regen_layers: Sequence[int],
              targets: list[tuple[int, list[int]]], batch_size: int, label: str,
              detect: tuple[float, float] | None = None) -> dict[str, Any]:
    """One condition over the evaluation chunks. ``plan``: per target (its layer L_t, {edited layer: dims}); the
    positions are ``coords[L_t]``. With ``detect`` = (abs, rel) (clean run only), each batch's massive
    positions at every target layer are detected first and written into ``coords``."""
    nll_sums: list[float] = []
    counts: list[int] = []
    regen = _Regen()
    n_edited = 0
    for indices, ids, mask, logits, acts in iter_corpus(model, corpus, _capture_names(model, regen_layers),
                                                         batch_size=batch_size,
                                                         fwd_hooks=_edit_hooks(plan, coords, mode, means_by_layer),
                                                         need_logits=True, progress=label or False):
        if detect is not None:
            _detect_targets(coords, acts, mask, indices, targets, detect)
        s, c = chunk_nll(logits, ids, mask)
        nll_sums += s
        counts += c
        entries = []
        for tl, tdims in targets:
            entries += [(r, p, d) for r, p in _batch_coords(indices, coords.get(tl, {})) for d in tdims]
        regen.add(acts, regen_layers, entries)
        n_edited += _n_edited(plan, coords, indices)
    return {"nll_sums": nll_sums, "counts": counts, "regeneration": regen.table(regen_layers), "n_edited": n_edited}


def _detect_positions(h: torch.Tensor, mask: torch.Tensor, indices: range, dims: Sequence[int], abs_threshold: float,
                      rel_threshold: float) -> Coords:
    """Massive positions per sequence of one batch's block output (a position counts if any of ``dims`` is massive)."""
    mas, _ = detect(h, mask, abs_threshold=abs_threshold, rel_threshold=rel_threshold)
    coords: dict[int, set[int]] = defaultdict(set)
    for row, pos, d in zip(mas.rows.tolist(), mas.positions.tolist(), mas.dims.tolist()):
        if d in set(dims):
            coords[indices[row]].add(pos)
    return {s: sorted(p) for s, p in coords.items()}


@dataclass
class _Calibrated:
    """What the calibration text decides, the same way for :func:`intervene` and :func:`vision_intervene`:
    the ``targets`` [(L_t, dims)], per target the last layer the "every layer" variant edits (``lasts``), the
    signed means (``raw_means`` {(layer, class, dim): (mean, n)}; ``means_by_layer`` {layer: {(class, dim):
    mean}}, ``missing`` the borrowed ones), the ordinary-dim ``pool`` and the ``controls`` {seed offset: dims}."""

    scan: ScanResult
    targets: list[tuple[int, list[int]]]
    lasts: dict[int, int]
    raw_means: dict[tuple[int, str, int], tuple[float, int]]
    means_by_layer: dict[int, dict[tuple[str, int], float]]
    missing: list[str]
    pool: list[int]
    controls: dict[int, list[int]]

    @property
    def dims(self) -> list[int]:
        return sorted(d for _, ds in self.targets for d in ds)

    def layers(self, tl: int, variant: str = "one") -> list[int]:
        """The layers target ``tl`` edits: its own (``one``) or through its last massive layer (``every``)."""
        return [tl] if variant == "one" else list(range(tl, self.lasts[tl] + 1))

    def conditions(self, variant: str = "one") -> list[tuple[str, str, list[tuple[int, dict[int, list[int]]]]]]:
        """(name, mode, plan) of the zero, mean and control conditions: the controls hand their random ordinary
        dims out to the targets in order (as many as each target has), at the same layers and positions."""
        def plan(dims_of: list[list[int]]) -> list[tuple[int, dict[int, list[int]]]]:
            return [(tl, {l: ds for l in self.layers(tl, variant)}) for (tl, _), ds in zip(self.targets, dims_of)]

        own = [td for _, td in self.targets]
        ends = [0, *itertools.accumulate(len(td) for td in own)]
        return [("zero", "zero", plan(own)), ("mean", "mean", plan(own))] + [
            (f"control {s}", "zero", plan([cdims[a:b] for a, b in zip(ends, ends[1:])]))
            for s, cdims in self.controls.items()]

    def records(self, coords: dict[int, Coords]) -> list[InterventionTarget]:
        """One :class:`InterventionTarget` per edited dim, with the evaluation positions found in the clean run."""
        return [InterventionTarget(dim=d, layer=tl, last_layer=self.lasts[tl],
                                   positions={str(s): p for s, p in sorted(coords.get(tl, {}).items())},
                                   n_positions=sum(len(p) for p in coords.get(tl, {}).values()))
                for tl, td in self.targets for d in td]

    def note(self, targets: str, layer: int | None) -> str:
        """``Targets (each): dims [5] at block 1; ...``, the first words of both studies' notes."""
        return (f"Targets ({'layer ' + str(layer) if layer is not None else targets}): "
                + "; ".join(f"dims {td} at block {tl}" for tl, td in self.targets))


def _calibrate(model, eval_corpus: Corpus, calib_corpus: Corpus, *, layer: int | None, targets: str, n_control: int,
               seed: int, abs_threshold: float, rel_threshold: float, batch_size: int, progress: bool,
               every: bool, bos_hint: bool) -> _Calibrated:
    """Step 1 of the module docstring on ``calib_corpus`` (disjoint from ``eval_corpus``): scan, choose the
    targets, their means and the control dims. ``every``: means through each target's last massive layer (else
    its own layer only); ``bos_hint``: a text corpus without BOS that finds nothing says to prepend one."""
    check_disjoint(eval_corpus, calib_corpus)
    cal_scan = scan(model, calib_corpus, abs_threshold=abs_threshold, rel_threshold=rel_threshold,
                    batch_size=batch_size, include_embed=False, progress=progress)
    try:
        chosen = choose_targets(cal_scan, targets, layer)
    except MiMassiveError as err:
        if not bos_hint or calib_corpus.prepend_bos or cal_scan.summary.get("first_layer") is not None:
            raise
        raise MiMassiveError(f"{err} (BOS was not prepended; massive activations often sit on it: "
                             "try --prepend-bos / prepend_bos=True)") from err
    lasts = {tl: max(tl, last_massive_layer(cal_scan, tdims)) if every else tl for tl, tdims in chosen}
    raw_means: dict[tuple[int, str, int], tuple[float, int]] = {}
    for tl, tdims in chosen:
        raw_means.update(calibration_means(model, calib_corpus, positions_at(cal_scan, tl, tdims), tdims,
                                           list(range(tl, lasts[tl] + 1)), batch_size=batch_size, progress=progress))
    missing: list[str] = []
    means_by_layer: dict[int, dict[tuple[str, int], float]] = defaultdict(dict)
    for tl, tdims in chosen:
        for l in range(tl, lasts[tl] + 1):
            means_by_layer[l].update(_means_for_layer(raw_means, l, tdims, missing))
    pool = ordinary_dim_pool(cal_scan, abs_threshold)
    ordinary, n_dims = set(pool), sum(len(td) for _, td in chosen)
    controls = {s: control_dims(model.cfg.d_model, [d for d in range(model.cfg.d_model) if d not in ordinary],
                                n_dims, seed=seed + s) for s in range(n_control)}
    return _Calibrated(cal_scan, chosen, lasts, raw_means, means_by_layer, missing, pool, controls)


def intervene(
    model,
    eval_corpus: Corpus,
    calib_corpus: Corpus,
    *,
    layer: int | None = None,
    n_control: int = 3,
    seed: int = 0,
    variants: Sequence[str] = ("one", "every"),
    targets: str = "each",
    abs_threshold: float = ABS_THRESHOLD,
    rel_threshold: float = REL_THRESHOLD,
    batch_size: int = 4,
    n_boot: int = 2000,
    progress: bool = True,
    options: dict[str, Any] | None = None,
) -> InterventionResult:
    """Run the whole intervention study (see the module docstring); returns an :class:`InterventionResult`.

    >>> import mi_massive as mm
    >>> from mi_massive.core.corpus import builtin_corpus
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> ev, cal = split_corpus(builtin_corpus(model, n_samples=4, seq_len=16, prepend_bos=True), 2)
    >>> r = intervene(model, ev, cal, n_control=1, variants=("one",), n_boot=50)
    >>> r.first_layer, r.dims, r.evaluation.n_start_positions
    (1, [5], 2)
    >>> [(t.dim, t.layer, t.positions) for t in r.targets]  # what was edited: dim 5 at block 1, position 0
    [(5, 1, {'0': [0], '1': [0]})]
    >>> r.to_dataframe()["condition"].tolist()[:3]
    ['original', 'zero (one layer)', 'mean (one layer)']
    >>> r.run("zero (one layer)").regeneration["start"].post[0]  # |h| at the zeroed entry, block 1
    0.0

    ``eval_corpus`` is scored; ``calib_corpus`` (disjoint windows, same BOS convention) gives the first
    massive block L, its dims and the per-class means. ``targets``: ``"each"`` (default: every massive dim at
    its own first massive block) or ``"earliest"`` (block L and its dims only); ``layer`` overrides L (one
    target: that block and the dims massive there); ``n_control`` random
    ordinary-dim controls (seeds ``seed``, ``seed + 1``, ...); ``variants``: ``one`` (edit block L) and/or
    ``every`` (every block where the dims are massive). Perplexities are exp(nats per token) with
    ``n_boot``-resample bootstrap CIs over chunks. ``progress``: a labelled bar per pass (False: silent).
    A vision model (:mod:`mi_massive.core.loading.vit`) runs
    :func:`vision_intervene` instead (one layer; no perplexity) and returns its record.
    """
    if is_vision(model):  # no next-token loss: the vision study (same targets, means and controls)
        return vision_intervene(model, eval_corpus, calib_corpus, layer=layer, n_control=n_control, seed=seed,
                                targets=targets, abs_threshold=abs_threshold, rel_threshold=rel_threshold,
                                batch_size=batch_size, n_boot=n_boot, options=options)
    for v in variants:
        if v not in ("one", "every"):
            raise MiMassiveError(f"unknown variant '{v}' (one, every)")
    cal = _calibrate(model, eval_corpus, calib_corpus, layer=layer, targets=targets, n_control=n_control, seed=seed,
                     abs_threshold=abs_threshold, rel_threshold=rel_threshold, batch_size=batch_size,
                     progress=progress, every=True, bos_hint=True)
    chosen, lasts, dims = cal.targets, cal.lasts, cal.dims
    L = chosen[0][0]
    last = max(lasts.values())
    all_layers = sorted({l for tl, _ in chosen for l in cal.layers(tl, "every")})
    regen_layers = list(range(L, model.cfg.n_layers))
    coords: dict[int, Coords] = {}  # filled by the clean run: target layer -> each chunk's own massive positions
    plan: list[tuple[str, str, str, list[tuple[int, dict[int, list[int]]]]]] = [("original", "none", "-", [])]
    for v in variants:
        plan += [(f"{name} ({v} layer)", mode, v, tplan) for name, mode, tplan in cal.conditions(v)]
    runs = []
    for name, mode, variant, tplan in plan:
        rec = _eval_run(model, eval_corpus, coords, tplan, "zero" if mode == "none" else mode,
                        cal.means_by_layer, regen_layers, chosen, batch_size, name if progress else "",
                        detect=(abs_threshold, rel_threshold) if mode == "none" else None)
        est = ppl_with_ci(rec["nll_sums"], rec["counts"], n_boot=n_boot, seed=seed)
        runs.append({"name": name, "mode": mode, "variant": variant,
                     "layers": sorted({l for _, dl in tplan for l in dl}), "dims": _plan_dims(tplan),
                     "ppl": est.to_dict(), **rec})
    base = (runs[0]["nll_sums"], runs[0]["counts"])
    for r in runs:
        r["ratio_to_original"] = list(paired_ratio_ci(base, (r["nll_sums"], r["counts"]), n_boot=n_boot, seed=seed))
    table = ppl_table(runs)
    union: dict[int, set[int]] = defaultdict(set)
    for tc in coords.values():
        for seq, ps in tc.items():
            union[seq].update(ps)
    merged = {s: sorted(union[s]) for s in sorted(union)}
    n_pos = sum(len(p) for p in merged.values())
    n_start = sum(1 for p in merged.values() for q in p if q == 0)
    evaluation = {"corpus": eval_corpus.describe(), "n_chunks": len(eval_corpus), "n_massive_positions": n_pos,
                  "n_start_positions": n_start, "n_other_positions": n_pos - n_start,
                  "chunks_without_massive": len(eval_corpus) - len(merged),
                  "positions": {str(s): p for s, p in merged.items()},
                  "regeneration_layers": regen_layers}
    calibration = {
        "corpus": calib_corpus.describe(), "first_layer": L, "dims": dims, "last_massive_layer": last,
        "near_massive_dims_at_first_layer": sorted({e.dim for e in cal.scan.near_massive if e.layer == L}),
        "means": [{"layer": l, "class": c, "dim": d, "mean": m, "n": n}
                  for (l, c, d), (m, n) in sorted(cal.raw_means.items())],
        "missing_means": cal.missing, "control_dims": {str(s): d for s, d in cal.controls.items()},
        "ordinary_pool_size": len(cal.pool),
    }
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "n_control": n_control, "seed": seed,
            "variants": list(variants), "targets": "layer" if layer is not None else targets, "n_boot": n_boot, "hook": act_pattern("resid_post"), **(options or {})}
    notes = [
        f"{cal.note(targets, layer)}. Positions are each "
        "evaluation chunk's own massive positions at the target's layer (clean run); means are per layer, position "
        "class and dim over calibration text disjoint from the evaluation chunks.",
        "'every layer' edits " + "; ".join(f"layers {tl}..{lasts[tl]} for dims {td}" for tl, td in chosen)
        + " (first to last layer where these dims are massive in calibration).",
        "Regeneration: 'pre' is what each block computed at the edited entries before any edit at that layer "
        + ("(resid_mid + mlp_out)" if act_name("resid_mid", L) in model.hook_dict else
           "(parallel block: resid_pre + attn_out + mlp_out)") + "; 'post' is what the next block reads.",
    ]
    if cal.missing:
        classes = sorted({m.split("'")[1] for m in cal.missing})
        used = sum(1 for p in merged.values() for q in p if position_class(q) in classes)
        notes.append(f"no calibration positions of class {', '.join(classes)} ({len(cal.missing)} layer/dim pairs, "
                     f"listed under calibration.missing_means): those entries use the other class's mean; "
                     f"{used} evaluation position(s) needed it.")
    return InterventionResult(provenance=provenance(model, eval_corpus, seed=seed, options=opts), first_layer=L,
                              dims=dims, edited_layers_all=all_layers, targets=cal.records(coords),
                              calibration=Calibration.from_dict(calibration),
                              evaluation=Evaluation.from_dict(evaluation),
                              runs=[InterventionRun.from_dict(r) for r in runs],
                              table=[PplRow.from_dict(r) for r in table], notes=notes)


def ppl_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sun et al. Table 3 style rows: condition, variant, PPL [95% CI], ratio to original [95% CI]."""
    rows = []
    for r in runs:
        p = r["ppl"]
        rows.append({"condition": r["name"], "variant": r["variant"], "ppl": p["ppl"], "ci95": p["ci95"],
                     "ratio": r["ratio_to_original"][0], "ratio_ci95": r["ratio_to_original"][1:]})
    return rows


def _vision_metric(model, out: torch.Tensor, ref: torch.Tensor) -> tuple[list[float], list[bool] | None]:
    """Per image: KL(p_ref || p_out) over the classes (classifier head), else ||z - z_ref|| / ||z_ref|| of the final
    CLS representation; and whether the top class is unchanged (classifier only)."""
    if model.cfg.n_classes:
        logp_ref, logp = torch.log_softmax(ref.double(), -1), torch.log_softmax(out.double(), -1)
        kl = (logp_ref.exp() * (logp_ref - logp)).sum(-1)
        return kl.tolist(), (ref.argmax(-1) == out.argmax(-1)).tolist()
    z_ref, z = ref[:, 0].double(), out[:, 0].double()
    return ((z - z_ref).norm(dim=-1) / z_ref.norm(dim=-1).clamp_min(1e-30)).tolist(), None


def vision_intervene(model, eval_corpus: Corpus, calib_corpus: Corpus, *, layer: int | None = None,
                     n_control: int = 3, seed: int = 0, targets: str = "each", abs_threshold: float = ABS_THRESHOLD,
                     rel_threshold: float = REL_THRESHOLD, batch_size: int = 8, n_boot: int = 2000,
                     options: dict[str, Any] | None = None) -> VisionInterventionResult:
    """Zero the massive entries of a vision transformer (or set them to their calibration mean) at their first
    massive block and measure how the output moves; controls zero as many random ordinary dims at the same positions.

    >>> import mi_massive as mm
    >>> from mi_massive.core.loading.vit import load_vision
    >>> from mi_massive.core.corpus.images import image_corpus
    >>> model = load_vision("toy-vit", plant=[(1, 6, 5, 20000.0)])
    >>> ev, cal = split_corpus(image_corpus(model, n_images=6), 3)
    >>> r = mm.intervene(model, ev, cal, n_control=1, n_boot=50)
    >>> r.metric, [(t.dim, t.layer) for t in r.targets], r.positions_kind
    ('kl', [(5, 1)], {'cls': 0, 'register': 0, 'patch': 3})
    >>> r.run("original").mean, r.run("zero").mean > r.run("control 0").mean
    (0.0, True)

    Targets, positions (each evaluation image's own massive positions at the target block, clean run), calibration
    means (per position class: CLS = position 0, other) and control dims are chosen exactly as in
    :func:`intervene`. The metric (``VisionInterventionResult.metric``): with a classifier head the KL divergence
    of the edited class distribution from the original one (nats per image) and the share of unchanged top classes;
    a bare encoder (DINOv2, CLIP's vision tower) has no loss to score, so the proxy is the relative change of its
    final normalised CLS representation. A randomly initialised toy has no meaningful accuracy either: these are
    proxies and the record says so. Means over images with ``n_boot`` bootstrap CIs.
    """
    cal = _calibrate(model, eval_corpus, calib_corpus, layer=layer, targets=targets, n_control=n_control, seed=seed,
                     abs_threshold=abs_threshold, rel_threshold=rel_threshold, batch_size=batch_size,
                     progress=False, every=False, bos_hint=False)
    names = sorted({act_name("resid_post", tl) for tl, _ in cal.targets})
    coords: dict[int, Coords] = {}
    ref: list[torch.Tensor] = []
    for indices, _ids, mask, out, acts in iter_corpus(model, eval_corpus, names, batch_size=batch_size,
                                                       need_logits=True, progress=False):
        ref.append(out.detach().float().cpu())
        _detect_targets(coords, acts, mask, indices, cal.targets, (abs_threshold, rel_threshold))
    ref_all = torch.cat(ref)
    metric_kind = "kl" if model.cfg.n_classes else "rep_change"
    per, agree = _vision_metric(model, ref_all, ref_all)
    runs = [VisionRun(name="original", mode="none", dims=[], mean=0.0, ci95=[0.0, 0.0], per_image=per,
                      agreement=1.0 if agree is not None else None, n_edited=0)]
    for name, mode, tplan in cal.conditions():
        n_edited = 0
        outs = []
        for indices, _ids, _mask, out, _acts in iter_corpus(model, eval_corpus, [], batch_size=batch_size,
                                                             fwd_hooks=_edit_hooks(tplan, coords, mode,
                                                                                   cal.means_by_layer),
                                                             need_logits=True, progress=False):
            outs.append(out.detach().float().cpu())
            n_edited += _n_edited(tplan, coords, indices)
        values, agree = _vision_metric(model, torch.cat(outs), ref_all)
        lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        runs.append(VisionRun(name=name, mode=mode, dims=_plan_dims(tplan),
                              mean=float(sum(values) / len(values)), ci95=[lo, hi], per_image=values,
                              agreement=(sum(agree) / len(agree)) if agree is not None else None, n_edited=n_edited))
    kinds = {"cls": 0, "register": 0, "patch": 0}
    for tc in coords.values():
        for ps in tc.values():
            for p in ps:
                kinds[model.tokenizer.kind(p)] += 1
    note = ("KL(p_original || p_edited) of the classifier's class distribution, nats per image (a randomly "
            "initialised head: a proxy, not an accuracy)" if metric_kind == "kl" else
            "||z_edited - z|| / ||z|| of the final normalised CLS representation z (a bare encoder has no loss or "
            "accuracy to score: a proxy)")
    notes = [cal.note(targets, layer) + ". Each evaluation image's own massive positions at the target block (clean "
             "run) are edited at that block only; means are per position class (CLS = position 0, other) over "
             "disjoint calibration images.",
             f"Metric: {note}."] + ([f"calibration: {m}" for m in cal.missing])
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "n_control": n_control, "seed": seed,
            "targets": "layer" if layer is not None else targets, "n_boot": n_boot,
            "hook": act_pattern("resid_post"), "control_dims": {str(s): c for s, c in cal.controls.items()},
            **(options or {})}
    return VisionInterventionResult(provenance=provenance(model, eval_corpus, seed=seed, options=opts),
                                    metric=metric_kind, metric_note=note, targets=cal.records(coords),
                                    positions_kind=kinds, runs=runs, notes=notes)
