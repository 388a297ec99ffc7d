"""``patch``: activation patching clean -> corrupted over layers x positions and over heads.

For each component (``resid_pre``, ``attn_out``, ``mlp_out``: one cell per (layer, position);
``head``: one cell per (layer, head) at ``attn.hook_z``, all positions) the corrupted prompt is run
with that single activation replaced by its value on the clean prompt, and a metric is read:

* ``entry:L:P:D`` -- the signed residual h_L[P, D] (``blocks.L.hook_resid_post``; residual units);
* ``logit_diff:A:B`` -- logit[A] - logit[B] at the last position (A, B: token ids such as
  ``logit_diff:70:80`` or quoted single-token strings such as ``logit_diff:" Paris":" Rome"``);
* ``loss`` -- mean next-token cross-entropy of the (corrupted) sequence, nats;
* any callable ``metric(logits, cache) -> float`` (or a 0-d tensor): ``logits`` [1, pos, d_vocab],
  ``cache`` a dict hook name -> activation [1, ...] holding ``metric_hooks`` (default: every
  ``blocks.L.hook_resid_post``). The strings above are shortcuts for such callables.

Backends: ``transformer_lens`` runs ``transformer_lens.patching`` (it works with the bridge but its
metrics see only logits, so it serves ``logit_diff`` and ``loss``); ``native`` uses the package's
hooks and runner with the same conventions ([layer, pos] and [layer, head] grids) for every metric.
``auto`` picks transformer_lens when it can.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import Patch, patch_hooks
from mi_massive.analyses.sweep.run import sequence_loss
from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import run_capture
from mi_massive.core.names import act_name, resid_names

COMPONENTS = {"resid_pre": "resid_pre", "attn_out": "attn_out", "mlp_out": "mlp_out", "head": "z"}  # -> act_name kind
MetricFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], Any]
_TOKEN = r'(?:"[^"]*"|\'[^\']*\'|[^:]+)'
_LOGIT_DIFF = re.compile(rf"logit_diff:({_TOKEN}):({_TOKEN})", flags=re.DOTALL)


@dataclass
class PatchMetric:
    """A scalar read from a run: ``fn(logits, acts, ids)``; ``names`` are the hooks it needs."""

    label: str
    names: list[str]
    needs_logits: bool
    fn: Callable[[torch.Tensor | None, dict[str, torch.Tensor], torch.Tensor], float]
    logit_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # for transformer_lens.patching


def token_id(model, token: str, spec: str) -> int:
    """A token id from ``"70"`` or a quoted single-token string ``'" Paris"'`` (or an unquoted one)."""
    if token.strip().lstrip("-").isdigit():
        return int(token)
    text = token[1:-1] if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'" else token
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise MiMassiveError(f"metric {spec}: {text!r} is {len(ids)} tokens, not one")
    return int(ids[0])


def parse_metric(model, spec: str | MetricFn, ids: torch.Tensor | None = None, *,
                 metric_hooks: Sequence[str] | None = None) -> PatchMetric:
    """``entry:L:P:D``, ``logit_diff:A:B`` (token ids or quoted token strings), ``loss`` or a callable.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama")
    >>> m = parse_metric(model, "entry:2:0:5")
    >>> m.names, m.needs_logits
    (['blocks.2.hook_resid_post'], False)
    """
    if callable(spec):
        names = list(metric_hooks) if metric_hooks is not None else resid_names(model.cfg.n_layers,
                                                                                include_embed=False)
        label = f"custom:{getattr(spec, '__name__', type(spec).__name__)}"
        return PatchMetric(label, names, True, lambda lg, acts, ids_: float(spec(lg, acts)),
                           lambda lg: torch.as_tensor(spec(lg, {})))
    if not isinstance(spec, str):
        raise MiMassiveError(f"metric must be a string or a callable (logits, cache) -> float, got {type(spec).__name__}")
    parts = spec.split(":")
    try:
        if parts[0] == "entry" and len(parts) == 4:
            layer, pos, dim = (int(x) for x in parts[1:])
            if not 0 <= layer < model.cfg.n_layers or not 0 <= dim < model.cfg.d_model or pos < 0:
                raise MiMassiveError(f"metric {spec}: layer/position/dim out of range")
            name = act_name("resid_post", layer)
            return PatchMetric(spec, [name], False, lambda lg, acts, ids_: float(acts[name][0, pos, dim]))
        match = _LOGIT_DIFF.fullmatch(spec)
        if match:
            a, b = token_id(model, match.group(1), spec), token_id(model, match.group(2), spec)
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
    raise MiMassiveError(f"unknown metric '{spec}'; use entry:L:P:D, logit_diff:A:B, loss or a callable")


def _run(model, ids, metric: PatchMetric, hooks=()) -> float:
    logits, acts = run_capture(model, ids, metric.names or [act_name("resid_pre", 0)], fwd_hooks=hooks,
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
        name = act_name(COMPONENTS[component], l)
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


def _ids(model, prompt: str | torch.Tensor, prepend_bos: bool) -> torch.Tensor:
    if isinstance(prompt, str):
        from mi_massive.core.corpus import text_corpus

        return torch.tensor(text_corpus(model, prompt, prepend_bos=prepend_bos).sequences)
    return torch.as_tensor(prompt)


def patch(model, clean: str | torch.Tensor, corrupted: str | torch.Tensor, *, metric: str | MetricFn = "loss",
          components: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "head"), backend: str = "auto",
          prepend_bos: bool = False, metric_hooks: Sequence[str] | None = None, progress: bool = True,
          options: dict[str, Any] | None = None) -> PatchingResult:
    """Patch every single activation of ``components`` from the clean into the corrupted run.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> res = mm.patch(model, "abcde", "abxde", metric="entry:2:3:7", components=["resid_pre"], progress=False)
    >>> res.results["resid_pre"][0][2] == res.clean, res.results["resid_pre"][0][0] == res.corrupted
    (True, True)
    >>> same = mm.patch(model, "abcde", "abxde", components=["resid_pre"], progress=False,
    ...                 metric=lambda logits, cache: cache["blocks.2.hook_resid_post"][0, 3, 7])
    >>> same.results == res.results
    True

    ``clean``/``corrupted``: texts (tokenised with ``prepend_bos``) or [1, pos] token ids, of equal
    length. ``metric``: a string shortcut or a callable ``(logits, cache) -> float`` (module doc);
    ``metric_hooks``: the hooks a callable reads from ``cache``. Each grid cell is the metric of the
    corrupted run with that one activation taken from the clean run (the metric's units); the
    ``normalised`` grids are (patched - corrupted) / (clean - corrupted): 1 = fully restored.
    ``backend``: ``auto`` (transformer_lens for the logit-only string metrics, else native),
    ``native`` or ``transformer_lens`` (a callable then gets an empty cache).
    """
    clean_ids, corrupted_ids = _ids(model, clean, prepend_bos), _ids(model, corrupted, prepend_bos)
    if clean_ids.shape != corrupted_ids.shape or clean_ids.ndim != 2 or clean_ids.shape[0] != 1:
        raise MiMassiveError(f"clean and corrupted prompts must be single sequences of equal length "
                             f"(got {tuple(clean_ids.shape)} and {tuple(corrupted_ids.shape)} tokens)")
    bad = [c for c in components if c not in COMPONENTS]
    if bad or not components:
        raise MiMassiveError(f"unknown component '{bad[0] if bad else ''}'; choose from {', '.join(COMPONENTS)}")
    if backend not in ("auto", "native", "transformer_lens"):
        raise MiMassiveError(f"unknown backend '{backend}'; use auto, native or transformer_lens")
    m = parse_metric(model, metric, corrupted_ids, metric_hooks=metric_hooks)
    if backend == "transformer_lens" and m.logit_fn is None:
        raise MiMassiveError(f"transformer_lens.patching metrics see only logits: use --backend native for {metric}")
    use_tl = backend == "transformer_lens" or (backend == "auto" and m.logit_fn is not None and not callable(metric))
    clean_value, corrupted_value = _run(model, clean_ids, m), _run(model, corrupted_ids, m)
    names = [act_name(COMPONENTS[c], l) for c in components for l in range(model.cfg.n_layers)]
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
    opts = {"metric": m.label, "components": list(components), "backend": "transformer_lens" if use_tl else "native",
            **(options or {})}
    return PatchingResult(provenance=provenance(model, options=opts), metric=m.label, clean=clean_value,
                          corrupted=corrupted_value, clean_tokens=[tok.decode([t]) for t in clean_ids[0].tolist()],
                          corrupted_tokens=[tok.decode([t]) for t in corrupted_ids[0].tolist()], results=results,
                          normalised=normalised, backend=opts["backend"])
