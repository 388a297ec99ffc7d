"""``patch``: activation patching clean -> corrupted over layers x positions and over heads.

For each component (``resid_pre``, ``attn_out``, ``mlp_out``: one cell per (layer, position);
``head``: one cell per (layer, head) at ``attn.hook_z``, all positions) the corrupted prompt is run
with that single activation replaced by its value on the clean prompt, and a metric is read:

* ``entry:L:P:D`` -- the signed residual h_L[P, D] (``blocks.L.hook_resid_post``; residual units);
* ``logit_diff:A:B`` -- logit[A] - logit[B] at the last position (token ids A, B);
* ``loss`` -- mean next-token cross-entropy of the (corrupted) sequence, nats.

Backends: ``transformer_lens`` runs ``transformer_lens.patching`` (it works with the bridge but its
metrics see only logits, so it serves ``logit_diff`` and ``loss``); ``native`` uses the package's
hooks and runner with the same conventions ([layer, pos] and [layer, head] grids) for every metric.
``auto`` picks transformer_lens when it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import Patch, patch_hooks
from mi_massive.analyses.sweep.run import sequence_loss
from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.core.io import provenance
from mi_massive.core.engine import run_capture

COMPONENTS = {"resid_pre": "blocks.{l}.hook_resid_pre", "attn_out": "blocks.{l}.hook_attn_out",
              "mlp_out": "blocks.{l}.hook_mlp_out", "head": "blocks.{l}.attn.hook_z"}


@dataclass
class PatchMetric:
    """A scalar read from a run: ``fn(logits, acts, ids)``; ``names`` are the hooks it needs."""

    label: str
    names: list[str]
    needs_logits: bool
    fn: Callable[[torch.Tensor | None, dict[str, torch.Tensor], torch.Tensor], float]
    logit_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # for transformer_lens.patching


def parse_metric(model, spec: str, ids: torch.Tensor | None = None) -> PatchMetric:
    """``entry:L:P:D``, ``logit_diff:A:B`` (token ids) or ``loss``."""
    parts = spec.split(":")
    try:
        if parts[0] == "entry" and len(parts) == 4:
            layer, pos, dim = (int(x) for x in parts[1:])
            if not 0 <= layer < model.cfg.n_layers or not 0 <= dim < model.cfg.d_model or pos < 0:
                raise MiMassiveError(f"metric {spec}: layer/position/dim out of range")
            name = f"blocks.{layer}.hook_resid_post"
            return PatchMetric(spec, [name], False, lambda lg, acts, ids_: float(acts[name][0, pos, dim]))
        if parts[0] == "logit_diff" and len(parts) == 3:
            a, b = int(parts[1]), int(parts[2])
            if not (0 <= a < model.cfg.d_vocab and 0 <= b < model.cfg.d_vocab):
                raise MiMassiveError(f"metric {spec}: token ids must be in 0..{model.cfg.d_vocab - 1}")
            f = lambda lg: lg[0, -1, a] - lg[0, -1, b]  # noqa: E731
            return PatchMetric(spec, [], True, lambda lg, acts, ids_: float(f(lg)), f)
        if parts[0] == "loss" and len(parts) == 1:
            def loss_of(lg, ids_):
                return sequence_loss(lg, ids_, torch.ones_like(ids_, dtype=torch.bool))[0]
            return PatchMetric(spec, [], True, lambda lg, acts, ids_: float(loss_of(lg, ids_)),
                               (lambda lg: loss_of(lg, ids)) if ids is not None else None)
    except ValueError as err:
        raise MiMassiveError(f"cannot read metric '{spec}': {err}") from err
    raise MiMassiveError(f"unknown metric '{spec}'; use entry:L:P:D, logit_diff:A:B or loss")


def _run(model, ids, metric: PatchMetric, hooks=()) -> float:
    logits, acts = run_capture(model, ids, metric.names or ["blocks.0.hook_resid_pre"], fwd_hooks=hooks,
                               need_logits=metric.needs_logits)
    return metric.fn(logits, acts, ids)


def native_grid(model, clean_ids, corrupted_ids, component: str, metric: PatchMetric,
                clean_acts: dict[str, torch.Tensor], progress: bool = False) -> torch.Tensor:
    """[layer, pos] (or [layer, head]) grid of the metric with one clean activation patched in."""
    n_layers = model.cfg.n_layers
    width = model.cfg.n_heads if component == "head" else corrupted_ids.shape[1]
    grid = torch.zeros(n_layers, width)
    cells = [(l, i) for l in range(n_layers) for i in range(width)]
    for l, i in tqdm(cells, desc=f"patch {component}", disable=not progress, leave=False):
        name = COMPONENTS[component].format(l=l)
        patch = Patch(name, components=(i,)) if component == "head" else Patch(name, positions=(i,))
        grid[l, i] = _run(model, corrupted_ids, metric, patch_hooks([patch], clean_acts))
    return grid


def tl_grid(model, clean_ids, corrupted_ids, component: str, metric: PatchMetric) -> torch.Tensor:
    """The same grid from ``transformer_lens.patching`` (logit metrics only)."""
    import transformer_lens.patching as P

    fn = {"resid_pre": P.get_act_patch_resid_pre, "attn_out": P.get_act_patch_attn_out,
          "mlp_out": P.get_act_patch_mlp_out, "head": P.get_act_patch_attn_head_out_all_pos}[component]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_ids)
        return fn(model, corrupted_ids, cache, metric.logit_fn).detach().float()


def patch(model, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor, *, metric: str,
          components: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "head"), backend: str = "auto",
          progress: bool = True, options: dict[str, Any] | None = None) -> PatchingResult:
    """Patch every single activation of ``components`` from the clean into the corrupted run.

    ``clean_ids``/``corrupted_ids``: [1, pos] token ids of equal length.
    """
    if clean_ids.shape != corrupted_ids.shape or clean_ids.ndim != 2 or clean_ids.shape[0] != 1:
        raise MiMassiveError(f"clean and corrupted prompts must be single sequences of equal length "
                             f"(got {tuple(clean_ids.shape)} and {tuple(corrupted_ids.shape)} tokens)")
    bad = [c for c in components if c not in COMPONENTS]
    if bad or not components:
        raise MiMassiveError(f"unknown component '{bad[0] if bad else ''}'; choose from {', '.join(COMPONENTS)}")
    if backend not in ("auto", "native", "transformer_lens"):
        raise MiMassiveError(f"unknown backend '{backend}'; use auto, native or transformer_lens")
    m = parse_metric(model, metric, corrupted_ids)
    if backend == "transformer_lens" and m.logit_fn is None:
        raise MiMassiveError(f"transformer_lens.patching metrics see only logits: use --backend native for {metric}")
    use_tl = backend == "transformer_lens" or (backend == "auto" and m.logit_fn is not None)
    clean_value, corrupted_value = _run(model, clean_ids, m), _run(model, corrupted_ids, m)
    names = [COMPONENTS[c].format(l=l) for c in components for l in range(model.cfg.n_layers)]
    clean_acts = {} if use_tl else run_capture(model, clean_ids, names)[1]
    results, normalised = {}, {}
    for c in components:
        grid = tl_grid(model, clean_ids, corrupted_ids, c, m) if use_tl else \
            native_grid(model, clean_ids, corrupted_ids, c, m, clean_acts, progress)
        results[c] = grid.tolist()
        denom = clean_value - corrupted_value
        normalised[c] = ((grid - corrupted_value) / denom).tolist() if abs(denom) > 1e-12 else \
            torch.full_like(grid, float("nan")).tolist()
    tok = model.tokenizer
    opts = {"metric": metric, "components": list(components), "backend": "transformer_lens" if use_tl else "native",
            **(options or {})}
    return PatchingResult(provenance=provenance(model, options=opts), metric=metric, clean=clean_value,
                          corrupted=corrupted_value, clean_tokens=[tok.decode([t]) for t in clean_ids[0].tolist()],
                          corrupted_tokens=[tok.decode([t]) for t in corrupted_ids[0].tolist()], results=results,
                          normalised=normalised, backend=opts["backend"])
