"""Sun/Owen interventions on massive activations, measured by perplexity (spec §1.4, §2.5, §4, §5.2).

Steps (every number is recomputed for the model at hand; nothing is hard-coded):

1. **Calibration** (text disjoint from the evaluation chunks): scan it, take the first massive layer L
   and its massive dims D; the massive positions of each calibration sequence at L; then the signed
   mean of h_l[t, d] for every layer l >= L, position class (start = position 0, other) and d in D, over
   the same (position x dim) cross product the edit will touch. Ordinary dims (|h| never above the
   absolute threshold in any layer) are the pool for the control.
2. **Evaluation**: a clean pass over the evaluation chunks gives the original perplexity and each
   chunk's own massive positions at L (same rule, per sequence).
3. **Conditions**, each with the same chunks and BOS convention: set the massive entries to zero / to
   the calibration mean at L only ("one layer"), or at every layer from L to the last massive layer
   ("every layer"); the control zeroes |D| random ordinary dims at the same positions and layers
   (several seeds). Per run: per-chunk NLL, perplexity with a bootstrap CI over chunks, the paired
   ratio to the original, and the regeneration profile (does a later block write the value back?).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torch

from mi_massive.core.stats import chunk_nll, paired_ratio_ci, ppl_with_ci
from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD, detect, sequence_stats
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.intervention import control_dims, entry_edit, layer_hooks
from mi_massive.analyses.scan.run import scan
from mi_massive.core.provenance import provenance
from mi_massive.analyses.intervene.record import (Calibration, Evaluation, InterventionResult, InterventionRun,
                                                  PplRow)
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
                      batch_size: int = 4) -> dict[tuple[int, str, int], tuple[float, int]]:
    """Signed mean of h_l[t, d] over the calibration massive positions x ``dims``: {(layer, class, dim): (mean, n)}."""
    names = [act_name("resid_post", l) for l in layers]
    sums: dict[tuple[int, str, int], float] = defaultdict(float)
    counts: dict[tuple[int, str, int], int] = defaultdict(int)
    for indices, _ids, _mask, _lg, acts in iter_corpus(model, corpus, names, batch_size=batch_size,
                                                       progress="calibration means"):
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


def _capture_names(layers: Sequence[int]) -> list[str]:
    names = []
    for l in layers:
        names += [act_name("resid_mid", l), act_name("mlp_out", l), act_name("resid_post", l)]
    return names


class _Regen:
    """Accumulates mean |h| at edited entries per layer and class: clean, block-computed (pre-edit), post-edit."""

    def __init__(self) -> None:
        self.sum: dict[tuple, float] = defaultdict(float)
        self.n: dict[tuple, int] = defaultdict(int)

    def add(self, acts: dict[str, torch.Tensor], layers: Sequence[int], entries: list[tuple[int, int, int]]) -> None:
        for l in layers:
            post = acts[act_name("resid_post", l)]
            pre = acts[act_name("resid_mid", l)] + acts[act_name("mlp_out", l)]
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


def _eval_run(model, corpus: Corpus, coords: Coords, dims_by_layer: dict[int, list[int]], mode: str,
              means_by_layer: dict[int, dict[tuple[str, int], float]], regen_layers: Sequence[int],
              massive_dims: Sequence[int], batch_size: int, label: str,
              detect_at: tuple[int, float, float] | None = None) -> dict[str, Any]:
    """One condition over the evaluation chunks. With ``detect_at`` = (layer, abs, rel) (clean run only),
    each batch's massive positions are detected first and written into ``coords``."""
    nll_sums: list[float] = []
    counts: list[int] = []
    regen = _Regen()
    n_edited = 0

    def hooks(indices: range):
        bc = _batch_coords(indices, coords)
        edits = {l: entry_edit(bc, dims, mode=mode, means=means_by_layer.get(l)) for l, dims in dims_by_layer.items()}
        return layer_hooks(edits)

    for indices, ids, mask, logits, acts in iter_corpus(model, corpus, _capture_names(regen_layers),
                                                         batch_size=batch_size, fwd_hooks=hooks,
                                                         need_logits=True, progress=label):
        if detect_at is not None:
            coords.update(_detect_positions(acts[act_name("resid_post", detect_at[0])], mask, indices,
                                            massive_dims, detect_at[1], detect_at[2]))
        s, c = chunk_nll(logits, ids, mask)
        nll_sums += s
        counts += c
        bc = _batch_coords(indices, coords)
        regen.add(acts, regen_layers, [(r, p, d) for r, p in bc for d in massive_dims])
        n_edited += sum(len(bc) * len(d) for d in dims_by_layer.values())
    return {"nll_sums": nll_sums, "counts": counts, "regeneration": regen.table(regen_layers), "n_edited": n_edited}


def _detect_positions(h: torch.Tensor, mask: torch.Tensor, indices: range, dims: Sequence[int], abs_threshold: float,
                      rel_threshold: float) -> Coords:
    """Massive positions per sequence of one batch's block output (a position counts if any of ``dims`` is massive)."""
    med = sequence_stats(h, mask, 1).median
    mas, _ = detect(h, mask, med, abs_threshold=abs_threshold, rel_threshold=rel_threshold)
    coords: dict[int, set[int]] = defaultdict(set)
    for row, pos, d in zip(mas.rows.tolist(), mas.positions.tolist(), mas.dims.tolist()):
        if d in set(dims):
            coords[indices[row]].add(pos)
    return {s: sorted(p) for s, p in coords.items()}


def intervene(
    model,
    eval_corpus: Corpus,
    calib_corpus: Corpus,
    *,
    layer: int | None = None,
    n_control: int = 3,
    seed: int = 0,
    variants: Sequence[str] = ("one", "every"),
    abs_threshold: float = ABS_THRESHOLD,
    rel_threshold: float = REL_THRESHOLD,
    batch_size: int = 4,
    n_boot: int = 2000,
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
    >>> r.to_dataframe()["condition"].tolist()[:3]
    ['original', 'zero (one layer)', 'mean (one layer)']
    >>> r.run("zero (one layer)").regeneration["start"].post[0]  # |h| at the zeroed entry, block 1
    0.0

    ``eval_corpus`` is scored; ``calib_corpus`` (disjoint windows, same BOS convention) gives the first
    massive block L, its dims and the per-class means. ``layer`` overrides L; ``n_control`` random
    ordinary-dim controls (seeds ``seed``, ``seed + 1``, ...); ``variants``: ``one`` (edit block L) and/or
    ``every`` (every block where the dims are massive). Perplexities are exp(nats per token) with
    ``n_boot``-resample bootstrap CIs over chunks.
    """
    check_disjoint(eval_corpus, calib_corpus)
    for v in variants:
        if v not in ("one", "every"):
            raise MiMassiveError(f"unknown variant '{v}' (one, every)")
    cal_scan = scan(model, calib_corpus, abs_threshold=abs_threshold, rel_threshold=rel_threshold,
                    batch_size=batch_size, include_embed=False, progress=True)
    L, dims = first_layer_and_dims(cal_scan, layer)
    last = max(L, last_massive_layer(cal_scan, dims))
    all_layers = list(range(L, last + 1))
    n_layers = model.cfg.n_layers
    regen_layers = list(range(L, n_layers))
    cal_coords = positions_at(cal_scan, L, dims)
    raw_means = calibration_means(model, calib_corpus, cal_coords, dims, all_layers, batch_size=batch_size)
    missing: list[str] = []
    means_by_layer = {l: _means_for_layer(raw_means, l, dims, missing) for l in all_layers}
    pool = ordinary_dim_pool(cal_scan, abs_threshold)
    controls = {s: control_dims(model.cfg.d_model, [d for d in range(model.cfg.d_model) if d not in set(pool)],
                                len(dims), seed=seed + s) for s in range(n_control)}

    coords: Coords = {}  # filled by the clean run (each chunk's own massive positions at L)
    plan: list[tuple[str, str, str, dict[int, list[int]]]] = [("original", "none", "-", {})]
    for v in variants:
        layers = [L] if v == "one" else all_layers
        plan.append((f"zero ({v} layer)", "zero", v, {l: dims for l in layers}))
        plan.append((f"mean ({v} layer)", "mean", v, {l: dims for l in layers}))
        for s, cdims in controls.items():
            plan.append((f"control {s} ({v} layer)", "zero", v, {l: cdims for l in layers}))
    runs = []
    for name, mode, variant, dims_by_layer in plan:
        rec = _eval_run(model, eval_corpus, coords, dims_by_layer, "zero" if mode == "none" else mode,
                        means_by_layer, regen_layers, dims, batch_size, name,
                        detect_at=(L, abs_threshold, rel_threshold) if mode == "none" else None)
        est = ppl_with_ci(rec["nll_sums"], rec["counts"], n_boot=n_boot, seed=seed)
        runs.append({"name": name, "mode": mode, "variant": variant,
                     "layers": sorted(dims_by_layer), "dims": sorted({d for v_ in dims_by_layer.values() for d in v_}),
                     "ppl": est.to_dict(), **rec})
    base = (runs[0]["nll_sums"], runs[0]["counts"])
    for r in runs:
        r["ratio_to_original"] = list(paired_ratio_ci(base, (r["nll_sums"], r["counts"]), n_boot=n_boot, seed=seed))
    table = ppl_table(runs)
    n_pos = sum(len(p) for p in coords.values())
    n_start = sum(1 for p in coords.values() for q in p if q == 0)
    evaluation = {"corpus": eval_corpus.describe(), "n_chunks": len(eval_corpus), "n_massive_positions": n_pos,
                  "n_start_positions": n_start, "n_other_positions": n_pos - n_start,
                  "chunks_without_massive": len(eval_corpus) - len(coords),
                  "positions": {str(s): p for s, p in coords.items()},
                  "regeneration_layers": regen_layers}
    calibration = {
        "corpus": calib_corpus.describe(), "first_layer": L, "dims": dims, "last_massive_layer": last,
        "near_massive_dims_at_first_layer": sorted({e.dim for e in cal_scan.near_massive if e.layer == L}),
        "means": [{"layer": l, "class": c, "dim": d, "mean": m, "n": n} for (l, c, d), (m, n) in sorted(raw_means.items())],
        "missing_means": missing, "control_dims": {str(s): d for s, d in controls.items()},
        "ordinary_pool_size": len(pool),
    }
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "n_control": n_control, "seed": seed,
            "variants": list(variants), "n_boot": n_boot, "hook": act_pattern("resid_post"), **(options or {})}
    notes = [
        "Positions are each evaluation chunk's own massive positions at the first massive layer (clean run); "
        "means are per layer, position class and dim over calibration text disjoint from the evaluation chunks.",
        "'every layer' edits layers %d..%d (first to last layer where these dims are massive in calibration)." % (L, last),
        "Regeneration: 'pre' is what each block computed at the edited entries before any edit at that layer "
        "(resid_mid + mlp_out); 'post' is what the next block reads.",
    ]
    if missing:
        classes = sorted({m.split("'")[1] for m in missing})
        used = sum(1 for p in coords.values() for q in p if position_class(q) in classes)
        notes.append(f"no calibration positions of class {', '.join(classes)} ({len(missing)} layer/dim pairs, listed "
                     f"under calibration.missing_means): those entries use the other class's mean; "
                     f"{used} evaluation position(s) needed it.")
    return InterventionResult(provenance=provenance(model, eval_corpus, seed=seed, options=opts), first_layer=L,
                              dims=dims, edited_layers_all=all_layers, calibration=Calibration.from_dict(calibration),
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
