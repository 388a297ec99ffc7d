"""``patch``: activation patching clean -> corrupted over layers x positions and over heads.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> res = mm.patch(model, "abcde", "abxde", metric="loss:last", components=["resid_pre"], progress=False)
>>> round(res.normalised["resid_pre"][0][2], 4)   # the differing token's embedding restores everything
1.0

For each component (``resid_pre``, ``attn_out``, ``mlp_out``: one cell per (layer, position);
``head``: one cell per (layer, head) at ``attn.hook_z``, all positions) the corrupted prompt is run
with that single activation replaced by its value on the clean prompt, and a metric is read:

* ``entry:L:P:D`` -- the signed residual h_L[P, D] (``blocks.L.hook_resid_post``; residual units),
  e.g. a massive activation's value;
* ``logit_diff:A:B`` -- logit[A] - logit[B] at the last position (A, B: token ids such as
  ``logit_diff:70:80`` or quoted single-token strings such as ``logit_diff:" Paris":" Rome"``);
* ``loss`` (the default) -- mean next-token cross-entropy of the (corrupted) sequence, nats;
  ``loss:last`` -- the NLL of the last token only; ``loss:3,5`` -- the mean NLL of the tokens at
  positions 3 and 5 (0-based positions of the *predicted* tokens, 1..n-1);
* any callable ``metric(logits, cache) -> float`` (or a 0-d tensor): ``logits`` [1, pos, d_vocab],
  ``cache`` a dict hook name -> activation [1, ...] holding ``metric_hooks`` (default: every
  ``blocks.L.hook_resid_post``). The strings above are shortcuts for such callables.

Backends: ``native`` (the default; ``auto`` means native) uses the package's hooks and runner for
every metric; ``transformer_lens`` runs ``transformer_lens.patching`` (its metrics see only logits,
so it serves ``logit_diff`` and the losses). Both give [layer, pos] and [layer, head] grids.

The native ``fast`` method (default; ``method="naive"`` runs one full forward per cell) gives the
naive numbers (tested to 1e-5) with far less work, using only that the model is causal:

1. a cell whose clean activation equals the corrupted one (every position before the first
   differing token) cannot change anything: its value is the corrupted metric, without a forward;
2. the corrupted run is recorded once (:func:`~mi_massive.core.engine.record_block_calls`); a cell at
   layer L starts from the cached residual entering block L
   (:func:`~mi_massive.core.engine.run_blocks_from`), so blocks < L are never recomputed;
3. many cells share one forward: batch row r patches only its own cell
   (:func:`~mi_massive.core.hooks.ablation.per_row_patch`), all components of a layer together;
4. only what the metric reads is computed: positions up to the entry's (``entry``) and blocks up to its
   layer; the unembedding only at the scored positions from the first changed one (the earlier
   positions' NLLs are the corrupted run's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import einops
import torch
from tqdm.auto import tqdm

from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import Patch, patch_hooks, per_row_patch
from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import final_logits, record_block_calls, run_blocks_from, run_capture
from mi_massive.core.names import EMBED_HOOK, act_name, resid_names
from mi_massive.core.stats import token_nll

COMPONENTS = {"resid_pre": "resid_pre", "attn_out": "attn_out", "mlp_out": "mlp_out", "head": "z"}  # -> act_name kind
METHODS = ("fast", "naive")
MetricFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], Any]
_TOKEN = r'(?:"[^"]*"|\'[^\']*\'|[^:]+)'
_LOGIT_DIFF = re.compile(rf"logit_diff:({_TOKEN}):({_TOKEN})", flags=re.DOTALL)
_BLOCK = re.compile(r"blocks\.(\d+)\.")
METRIC_HELP = ("loss (default: mean next-token NLL, nats), loss:last, loss:3,5 (NLL of the tokens at those "
               "positions), entry:L:P:D (residual h_L[P, D], e.g. a massive entry), logit_diff:A:B (A, B: token ids "
               "or quoted single tokens such as logit_diff:\" Paris\":\" Rome\")")


@dataclass
class PatchMetric:
    """A scalar read from a run: ``fn(logits, acts, ids)``; ``names`` are the hooks it needs.

    ``kind`` (``entry``, ``logit_diff``, ``loss``, ``custom``) and ``entry`` / ``tokens`` /
    ``targets`` (the scored token positions of a loss; None: all) let the fast path compute only what
    the metric reads.
    """

    label: str
    names: list[str]
    needs_logits: bool
    fn: Callable[[torch.Tensor | None, dict[str, torch.Tensor], torch.Tensor], float]
    logit_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # for transformer_lens.patching
    kind: str = "custom"
    entry: tuple[int, int, int] | None = None
    tokens: tuple[int, int] | None = None
    targets: list[int] | None = field(default=None)
    custom: Callable[..., Any] | None = None


def token_id(model, token: str, spec: str) -> int:
    """A token id from ``"70"`` or a quoted single-token string ``'" Paris"'`` (or an unquoted one)."""
    if token.strip().lstrip("-").isdigit():
        return int(token)
    text = token[1:-1] if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'" else token
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise MiMassiveError(f"metric {spec}: {text!r} is {len(ids)} tokens, not one")
    return int(ids[0])


def _loss_targets(spec: str, arg: str | None, n_tokens: int | None) -> list[int] | None:
    """Scored token positions of ``loss`` / ``loss:last`` / ``loss:3,5`` (None: every position 1..n-1)."""
    if arg is None:
        return None
    if n_tokens is None:  # checked once the prompt is known
        return [] if arg == "last" else [int(x) for x in arg.split(",")]
    if arg == "last":
        return [n_tokens - 1]
    targets = sorted({int(x) for x in arg.split(",")})
    bad = [t for t in targets if not 1 <= t < n_tokens]
    if bad:
        raise MiMassiveError(f"metric {spec}: position {bad[0]} cannot be scored; the prompt has {n_tokens} tokens "
                             f"(positions 1..{n_tokens - 1} have a predicted token)")
    return targets


def loss_at(logits: torch.Tensor, ids: torch.Tensor, targets: Sequence[int] | None) -> torch.Tensor:
    """[batch] mean NLL (nats, float32) of the tokens at ``targets`` (None: every token 1..n-1)."""
    nll, _ = token_nll(logits, ids, dtype=torch.float32)
    return nll.mean(1) if targets is None else nll[:, [t - 1 for t in targets]].mean(1)


def parse_metric(model, spec: str | MetricFn, ids: torch.Tensor | None = None, *,
                 metric_hooks: Sequence[str] | None = None) -> PatchMetric:
    """``entry:L:P:D``, ``logit_diff:A:B`` (token ids or quoted token strings), ``loss[:last|:P,...]`` or a callable.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama")
    >>> m = parse_metric(model, "entry:2:0:5")
    >>> m.names, m.needs_logits
    (['blocks.2.hook_resid_post'], False)
    >>> parse_metric(model, "loss:2,4", torch.zeros(1, 6, dtype=torch.long)).targets
    [2, 4]
    """
    if callable(spec):
        names = list(metric_hooks) if metric_hooks is not None else resid_names(model.cfg.n_layers,
                                                                                include_embed=False)
        label = f"custom:{getattr(spec, '__name__', type(spec).__name__)}"
        return PatchMetric(label, names, True, lambda lg, acts, ids_: float(spec(lg, acts)),
                           lambda lg: torch.as_tensor(spec(lg, {})), custom=spec)
    if not isinstance(spec, str):
        raise MiMassiveError(f"metric must be a string or a callable (logits, cache) -> float, got {type(spec).__name__}")
    parts = spec.split(":")
    n_tokens = None if ids is None else int(ids.shape[1])
    try:
        if parts[0] == "entry" and len(parts) == 4:
            layer, pos, dim = (int(x) for x in parts[1:])
            if not 0 <= layer < model.cfg.n_layers or not 0 <= dim < model.cfg.d_model or pos < 0:
                raise MiMassiveError(f"metric {spec}: layer/position/dim out of range")
            if n_tokens is not None and pos >= n_tokens:
                raise MiMassiveError(f"metric {spec}: position {pos} is beyond the prompt ({n_tokens} tokens)")
            name = act_name("resid_post", layer)
            return PatchMetric(spec, [name], False, lambda lg, acts, ids_: float(acts[name][0, pos, dim]),
                               kind="entry", entry=(layer, pos, dim))
        match = _LOGIT_DIFF.fullmatch(spec)
        if match:
            a, b = token_id(model, match.group(1), spec), token_id(model, match.group(2), spec)
            if not (0 <= a < model.cfg.d_vocab and 0 <= b < model.cfg.d_vocab):
                raise MiMassiveError(f"metric {spec}: token ids must be in 0..{model.cfg.d_vocab - 1}")
            f = lambda lg: lg[0, -1, a] - lg[0, -1, b]  # noqa: E731
            return PatchMetric(spec, [], True, lambda lg, acts, ids_: float(f(lg)), f, kind="logit_diff", tokens=(a, b))
        if parts[0] == "loss" and len(parts) <= 2:
            targets = _loss_targets(spec, parts[1] if len(parts) == 2 else None, n_tokens)
            return PatchMetric(spec, [], True, lambda lg, acts, ids_: float(loss_at(lg, ids_, targets)[0]),
                               (lambda lg: loss_at(lg, ids, targets)[0]) if ids is not None else None,
                               kind="loss", targets=targets)
    except ValueError as err:
        raise MiMassiveError(f"cannot read metric '{spec}': {err}") from err
    raise MiMassiveError(f"unknown metric '{spec}'; use entry:L:P:D, logit_diff:A:B, loss, loss:last, loss:P,... "
                         f"or a callable")


def _run(model, ids, metric: PatchMetric, hooks=()) -> float:
    logits, acts = run_capture(model, ids, metric.names or [act_name("resid_pre", 0)], fwd_hooks=hooks,
                               need_logits=metric.needs_logits)
    return metric.fn(logits, acts, ids)


def _cells(model, component: str, n_pos: int, layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    width = model.cfg.n_heads if component == "head" else n_pos
    return [(layer, i) for layer in (range(model.cfg.n_layers) if layers is None else layers) for i in range(width)]


def native_grid(model, clean_ids, corrupted_ids, component: str, metric: PatchMetric,
                clean_acts: dict[str, torch.Tensor], bar=None, layers: Sequence[int] | None = None) -> torch.Tensor:
    """[layer, pos] (or [layer, head]) grid of the metric with one clean activation patched in: one
    full forward per cell (the naive method, kept as the reference)."""
    n_layers = model.cfg.n_layers
    width = model.cfg.n_heads if component == "head" else corrupted_ids.shape[1]
    grid = torch.zeros(n_layers, width)
    for l, i in _cells(model, component, corrupted_ids.shape[1], layers):
        name = act_name(COMPONENTS[component], l)
        patch = Patch(name, components=(i,)) if component == "head" else Patch(name, positions=(i,))
        grid[l, i] = _run(model, corrupted_ids, metric, patch_hooks([patch], clean_acts))
        if bar is not None:
            bar.update(1)
    return grid


def _block_layer(name: str) -> int | None:
    """Block index of a hook name; -1 for the embeddings; None for hooks after the blocks (ln_final, unembed)."""
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1))
    return -1 if name.startswith("hook_") else None


def fast_grids(model, clean_ids, corrupted_ids, components: Sequence[str], metric: PatchMetric,
               corrupted_value: float, *, max_rows: int = 64, bar=None,
               layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Every component's grid by the fast method (module docstring); same numbers as :func:`native_grid`.
    ``layers``: only these layers' cells (one layer's cells never depend on another's)."""
    n_layers, n_pos = model.cfg.n_layers, corrupted_ids.shape[1]
    last_layer = metric.entry[0] if metric.kind == "entry" else n_layers - 1
    if metric.kind == "entry":
        width, read_positions = metric.entry[1] + 1, None
    elif metric.kind == "loss":
        targets = metric.targets if metric.targets is not None else list(range(1, n_pos))
        width, read_positions = max(targets), [t - 1 for t in targets]
    elif metric.kind == "logit_diff":
        width, read_positions = n_pos, [n_pos - 1]
    else:
        width, read_positions = n_pos, None
    names = [act_name(COMPONENTS[c], layer) for c in components for layer in range(last_layer + 1)]
    _, clean_acts = run_capture(model, clean_ids[:, :width], names)
    with record_block_calls(model, range(last_layer + 1)) as calls:
        _, corr_acts = run_capture(model, corrupted_ids[:, :width], names)
    if metric.kind == "custom":
        _, corr_all = run_capture(model, corrupted_ids, [n for n in metric.names if _block_layer(n) is not None]
                                  or [EMBED_HOOK])
    corr_nll = None
    if metric.kind == "loss":
        logits, _ = run_capture(model, corrupted_ids, [EMBED_HOOK], need_logits=True)
        corr_nll = token_nll(logits, corrupted_ids, dtype=torch.float32)[0][0]  # [n_pos - 1]

    grids = {c: torch.full((n_layers, model.cfg.n_heads if c == "head" else n_pos), float(corrupted_value))
             for c in components}
    todo: dict[int, list[tuple[str, int, int]]] = {}  # layer -> [(component, index, first changed position)]
    for c in components:
        for layer, i in _cells(model, c, n_pos, layers):
            if layer > last_layer or (c != "head" and i >= width):
                continue  # causal: cannot reach what the metric reads
            name = act_name(COMPONENTS[c], layer)
            a, b = clean_acts[name][0], corr_acts[name][0]
            changed = (a[:, i] != b[:, i]).flatten(1).any(1) if c == "head" else (a[i] != b[i]).any()[None]
            if changed.any():
                first = i if c != "head" else int(changed.nonzero()[0])
                todo.setdefault(layer, []).append((c, i, first))
    if bar is not None:
        n_cells = sum(len(_cells(model, c, n_pos, layers)) for c in components)
        bar.update(n_cells - sum(map(len, todo.values())))
    resid_last = act_name("resid_post", n_layers - 1)
    for layer, cells in todo.items():
        hidden0 = calls[layer][0][0]
        for start in range(0, len(cells), max_rows):
            chunk = cells[start:start + max_rows]
            r = len(chunk)
            hooks = []
            for c in components:
                rows = [k for k, cell in enumerate(chunk) if cell[0] == c]
                if rows:
                    hooks += per_row_patch(act_name(COMPONENTS[c], layer), torch.tensor(rows),
                                           torch.tensor([chunk[k][1] for k in rows]),
                                           clean_acts[act_name(COMPONENTS[c], layer)], axis=2 if c == "head" else 1)
            hidden = einops.repeat(hidden0, "1 p d -> r p d", r=r)
            vals = _chunk_values(model, metric, layer, last_layer, hidden, calls, hooks, corrupted_ids, chunk,
                                 read_positions, corr_nll, resid_last,
                                 corr_all if metric.kind == "custom" else None)
            for (c, i, _), v in zip(chunk, vals.tolist()):
                grids[c][layer, i] = v
            if bar is not None:
                bar.update(r)
    return grids


def _chunk_values(model, metric: PatchMetric, layer, last_layer, hidden, calls, hooks, ids, chunk,
                  read_positions, corr_nll, resid_last, corr_all) -> torch.Tensor:
    """The metric for each row of one batched forward that starts at block ``layer``."""
    r = hidden.shape[0]
    if metric.kind == "entry":
        name = act_name("resid_post", last_layer)
        _, acts = run_blocks_from(model, layer, hidden, calls, 1, [name], fwd_hooks=hooks, last_layer=last_layer)
        _, pos, dim = metric.entry
        return acts[name][:, pos, dim]
    if metric.kind == "custom":
        later = [n for n in metric.names if (_block_layer(n) is None or _block_layer(n) >= layer)]
        logits, acts = run_blocks_from(model, layer, hidden, calls, 1, later, fwd_hooks=hooks, need_logits=True)
        out = []
        for k in range(r):
            cache = {n: (acts[n][k:k + 1] if n in acts else corr_all[n]) for n in metric.names}
            out.append(float(metric.custom(logits[k:k + 1], cache)))
        return torch.tensor(out)
    _, acts = run_blocks_from(model, layer, hidden, calls, 1, [resid_last], fwd_hooks=hooks,
                              last_layer=model.cfg.n_layers - 1)
    h = acts[resid_last]
    if metric.kind == "logit_diff":
        a, b = metric.tokens
        logits = final_logits(model, h[:, -1:])
        return logits[:, 0, a] - logits[:, 0, b]
    # loss: positions before the first changed one keep the corrupted run's NLL (causal)
    first = min(cell[2] for cell in chunk)
    nll = einops.repeat(corr_nll[[p for p in read_positions]], "t -> r t", r=r).clone()
    cols = [k for k, p in enumerate(read_positions) if p >= first]
    if cols:
        pos = [read_positions[k] for k in cols]
        logits = final_logits(model, h[:, pos])  # [r, k, vocab] (with any output soft-capping)
        target = ids[0, [p + 1 for p in pos]]
        pairs = torch.stack([torch.zeros_like(target), target], 1)  # token_nll scores pairs[:, 1] from logits[:, 0]
        lg = einops.rearrange(logits, "r k v -> (r k) 1 v").expand(-1, 2, -1)
        got = token_nll(lg, einops.repeat(pairs, "k two -> (r k) two", r=r), dtype=torch.float32)[0][:, 0]
        nll[:, cols] = einops.rearrange(got, "(r k) -> r k", r=r)
    return nll.mean(1)


def tl_grid(model, clean_ids, corrupted_ids, component: str, metric: PatchMetric) -> torch.Tensor:
    """The same grid from ``transformer_lens.patching`` (logit metrics only)."""
    import transformer_lens.patching as P

    fn = {"resid_pre": P.get_act_patch_resid_pre, "attn_out": P.get_act_patch_attn_out,
          "mlp_out": P.get_act_patch_mlp_out, "head": P.get_act_patch_attn_head_out_all_pos}[component]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_ids)
        return fn(model, corrupted_ids, cache, metric.logit_fn).detach().float()


def _ids(model, prompt: str | torch.Tensor, prepend_bos: bool | str | None) -> torch.Tensor:
    if isinstance(prompt, str):
        from mi_massive.core.corpus import text_corpus

        return torch.tensor(text_corpus(model, prompt, prepend_bos=prepend_bos).sequences)
    return torch.as_tensor(prompt)


def check_options(components: Sequence[str], backend: str, method: str) -> None:
    """One-line errors for an unknown component, backend or method (checked before a model is loaded).

    >>> check_options(["resid_pre", "head"], "auto", "fast")
    """
    bad = [c for c in components if c not in COMPONENTS]
    if bad or not components:
        raise MiMassiveError(f"unknown component '{bad[0] if bad else ''}'; choose from {', '.join(COMPONENTS)}")
    if backend not in ("auto", "native", "transformer_lens"):
        raise MiMassiveError(f"unknown backend '{backend}'; use auto, native or transformer_lens")
    if method not in METHODS:
        raise MiMassiveError(f"unknown patching method '{method}'; use fast or naive")


def check_patch_inputs(model, clean: str | torch.Tensor, corrupted: str | torch.Tensor, *, metric: str | MetricFn,
                       components: Sequence[str], backend: str = "auto", method: str = "fast", max_rows: int = 64,
                       prepend_bos: bool | str | None = "auto", metric_hooks: Sequence[str] | None = None,
                       layers: Sequence[int] | None = None):
    """Every check :func:`patch` makes before its first forward, without running one: (clean ids, corrupted ids,
    parsed metric, sorted layers or None). One-line :class:`MiMassiveError` for bad input (the sharded CLI path
    calls it before handing the grid to its units)."""
    clean_ids, corrupted_ids = _ids(model, clean, prepend_bos), _ids(model, corrupted, prepend_bos)
    if clean_ids.shape != corrupted_ids.shape or clean_ids.ndim != 2 or clean_ids.shape[0] != 1:
        raise MiMassiveError(f"clean and corrupted prompts must be single sequences of equal length "
                             f"(got {tuple(clean_ids.shape)} and {tuple(corrupted_ids.shape)} tokens)")
    check_options(components, backend, method)
    if max_rows < 1:
        raise MiMassiveError(f"max_rows must be a positive integer, got {max_rows}")
    if layers is not None:
        layers = sorted(set(int(layer) for layer in layers))
        if not layers or layers[0] < 0 or layers[-1] >= model.cfg.n_layers:
            raise MiMassiveError(f"layers must be within 0..{model.cfg.n_layers - 1}, got {layers}")
        if backend == "transformer_lens":
            raise MiMassiveError("layers (a sharded grid) needs the native backend")
    if corrupted_ids.shape[1] < 2 and not (isinstance(metric, str) and metric.startswith("entry")):
        raise MiMassiveError("the prompts need at least 2 tokens")
    m = parse_metric(model, metric, corrupted_ids, metric_hooks=metric_hooks)
    if backend == "transformer_lens" and m.logit_fn is None:
        raise MiMassiveError(f"transformer_lens.patching metrics see only logits: use --backend native for {metric}")
    return clean_ids, corrupted_ids, m, layers


def patch(model, clean: str | torch.Tensor, corrupted: str | torch.Tensor, *, metric: str | MetricFn = "loss",
          components: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "head"), backend: str = "auto",
          method: str = "fast", max_rows: int = 64, prepend_bos: bool | str | None = "auto",
          metric_hooks: Sequence[str] | None = None, layers: Sequence[int] | None = None, progress: bool = True,
          options: dict[str, Any] | None = None) -> PatchingResult:
    """Patch every single activation of ``components`` from the clean into the corrupted run.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> res = mm.patch(model, "abcde", "abxde", metric="entry:2:3:7", components=["resid_pre"], progress=False)
    >>> grid = res.results["resid_pre"]
    >>> abs(grid[0][2] - res.clean) < 1e-4, grid[0][0] == res.corrupted   # the differing token restores all
    (True, True)
    >>> same = mm.patch(model, "abcde", "abxde", components=["resid_pre"], progress=False,
    ...                 metric=lambda logits, cache: cache["blocks.2.hook_resid_post"][0, 3, 7])
    >>> bool(torch.allclose(torch.tensor(same.results["resid_pre"]), torch.tensor(grid), atol=1e-5))
    True

    ``clean``/``corrupted``: texts (tokenised with ``prepend_bos``) or [1, pos] token ids, of equal
    length. ``metric``: a string shortcut or a callable ``(logits, cache) -> float`` (module doc);
    ``metric_hooks``: the hooks a callable reads from ``cache``. Each grid cell is the metric of the
    corrupted run with that one activation taken from the clean run (the metric's units); the
    ``normalised`` grids are (patched - corrupted) / (clean - corrupted): 1 = fully restored.
    ``backend``: ``auto`` / ``native`` (the package's runner) or ``transformer_lens``
    (``transformer_lens.patching``; a callable then gets an empty cache). ``method`` (native):
    ``fast`` (batched, cached, causal shortcuts; module doc) or ``naive`` (one forward per cell);
    ``max_rows``: patched cells per batched forward. ``layers``: patch only these layers (the other rows
    are NaN; used to shard a grid over processes, :mod:`mi_massive.analyses.patch.shard`).
    ``progress``: one bar for the whole grid.
    """
    clean_ids, corrupted_ids, m, layers = check_patch_inputs(
        model, clean, corrupted, metric=metric, components=components, backend=backend, method=method,
        max_rows=max_rows, prepend_bos=prepend_bos, metric_hooks=metric_hooks, layers=layers)
    use_tl = backend == "transformer_lens"
    clean_value, corrupted_value = _run(model, clean_ids, m), _run(model, corrupted_ids, m)
    n_pos = corrupted_ids.shape[1]
    total = sum(len(_cells(model, c, n_pos, layers)) for c in components)
    bar = tqdm(total=total, desc=f"patching {total} cells ({', '.join(components)})", unit="cell",
               disable=not progress or use_tl, leave=False)
    with bar:
        if use_tl:
            grids = {c: tl_grid(model, clean_ids, corrupted_ids, c, m) for c in components}
        elif method == "fast":
            grids = fast_grids(model, clean_ids, corrupted_ids, components, m, corrupted_value, max_rows=max_rows,
                               bar=bar, layers=layers)
        else:
            names = [act_name(COMPONENTS[c], l) for c in components for l in range(model.cfg.n_layers)]
            clean_acts = run_capture(model, clean_ids, names)[1]
            grids = {c: native_grid(model, clean_ids, corrupted_ids, c, m, clean_acts, bar, layers) for c in components}
    if layers is not None:
        outside = [layer for layer in range(model.cfg.n_layers) if layer not in layers]
        for grid in grids.values():
            grid[outside] = float("nan")
    results, normalised = {}, {}
    denom = clean_value - corrupted_value
    for c in components:
        grid = grids[c]
        results[c] = grid.tolist()
        normalised[c] = ((grid - corrupted_value) / denom).tolist() if abs(denom) > 1e-12 else \
            torch.full_like(grid, float("nan")).tolist()
    tok = model.tokenizer
    opts = {"metric": m.label, "components": list(components), "backend": "transformer_lens" if use_tl else "native",
            **({"method": method} if method != "fast" and not use_tl else {}),
            **({"layers": layers} if layers is not None else {}), **(options or {})}
    return PatchingResult(provenance=provenance(model, options=opts), metric=m.label, clean=clean_value,
                          corrupted=corrupted_value, clean_tokens=[tok.decode([t]) for t in clean_ids[0].tolist()],
                          corrupted_tokens=[tok.decode([t]) for t in corrupted_ids[0].tolist()], results=results,
                          normalised=normalised, backend=opts["backend"])
