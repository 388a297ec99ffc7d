"""Running a bridge with hooks: the one place where forward passes and activation capture happen.

Analyses never register hooks themselves; they ask this module for activations (by TransformerLens
hook name, with optional intervention hooks in ``fwd_hooks``) and get plain tensors back. Two things
keep runs cheap:

* only the requested hooks are captured (the ``names_filter`` idea), never a full cache;
* when no logits are needed the forward pass stops as soon as the last requested hook has fired,
  so later blocks, the final norm and the unembedding (49152 x 576 for SmolLM2) are skipped.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import einops
import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from mi_massive.core.corpus.corpus import Corpus
from mi_massive.core.devices import auto_batch_size, input_device, is_out_of_memory
from mi_massive.core.fastpath import pick_route, run_residual
from mi_massive.core.hooks.types import Hook  # noqa: F401 (re-exported: the engine's fwd_hooks type)
from mi_massive.errors import MiMassiveError, NumericalOverflowError


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once every requested activation is captured."""


def check_hook_names(model, names: Iterable[str]) -> None:
    """Raise a clear error for a hook name the model does not have."""
    hooks = model.hook_dict  # a property that builds the dict: once, not per name
    missing = [n for n in names if n not in hooks]
    if missing and getattr(model.cfg, "is_visual_model", False):  # mi_massive.core.loading.vit.VisionModel
        raise MiMassiveError(f"vision model {model.cfg.model_name} has no hook {missing[0]}: it provides "
                             f"resid_pre, resid_post, attn.hook_pattern and ln_final (scan, heads and intervene apply)")
    if missing:
        raise MiMassiveError(f"unknown hook name(s): {', '.join(missing[:5])}")


MASKED_MINUS_INF = ("attn_scores",)  # hooks where -inf marks masked keys by design


def check_finite(name: str, tensor: torch.Tensor, mask: Bool[torch.Tensor, "batch pos"] | None = None,
                 source_dtype: torch.dtype | None = None) -> None:
    """Raise :class:`NumericalOverflowError` if ``tensor`` holds inf/NaN at real (unmasked) positions.

    Attention scores legitimately hold -inf at masked (future) keys; only NaN and +inf count there.
    """
    if tensor.numel() and bool(torch.isfinite(tensor.sum())):  # one pass: a finite sum has no inf/NaN term
        return
    bad = ~torch.isfinite(tensor)
    if any(tag in name for tag in MASKED_MINUS_INF):
        bad &= tensor != float("-inf")
    if mask is not None and bad.ndim >= 2 and bad.shape[:2] == mask.shape:
        bad = bad & mask.to(bad.device).view(*mask.shape, *([1] * (bad.ndim - 2)))
    if bad.any():
        where = bad.nonzero()[0].tolist()
        hint = ("the values exceed the dtype's range (float16 max is 65,504): rerun with --dtype float32"
                if (source_dtype or tensor.dtype) in (torch.float16, torch.bfloat16) else
                "the model itself produced non-finite values")
        raise NumericalOverflowError(f"inf/NaN in {name} at index {where}: {hint}")


def _kept(value: torch.Tensor, to_float32: bool) -> torch.Tensor:
    """A captured tensor as stored: floats in float32 (``to_float32``) or as they are, anything else copied."""
    if value.is_floating_point():
        return value.float() if to_float32 else value
    return value.clone()


def by_device(tensors: Mapping[str, torch.Tensor]) -> dict[torch.device, list[str]]:
    """The names grouped by their tensor's device, in first-seen order (one read per group, not per tensor).

    >>> by_device({"a": torch.ones(1), "b": torch.ones(1, device="meta"), "c": torch.ones(1)})
    {device(type='cpu'): ['a', 'c'], device(type='meta'): ['b']}
    """
    groups: dict[torch.device, list[str]] = {}
    for name, tensor in tensors.items():
        groups.setdefault(tensor.device, []).append(name)
    return groups


def suspects(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names whose tensor may hold inf/NaN: those whose float32 sum is not finite. One device read per device.

    >>> suspects({"a": torch.ones(3), "b": torch.tensor([1.0, float("inf")]), "c": torch.tensor([float("nan")])})
    ['b', 'c']

    A finite sum has no inf/NaN term; a non-finite sum of finite terms (an overflowing sum) only sends the
    tensor to the exact test (:func:`check_finite`), which then passes.
    """
    out = []
    for names in by_device(tensors).values():
        sums = torch.stack([tensors[n].sum(dtype=torch.float32) for n in names])
        out += [n for n, ok in zip(names, torch.isfinite(sums).tolist()) if not ok]
    return sorted(out, key=list(tensors).index)


@torch.no_grad()
def run_capture(
    model,
    ids: Int[torch.Tensor, "batch pos"],
    names: Sequence[str],
    *,
    fwd_hooks: Sequence[Hook] = (),
    need_logits: bool = False,
    mask: Bool[torch.Tensor, "batch pos"] | None = None,
    check: bool = True,
    to_float32: bool = True,
    route: str = "bridge",
) -> tuple[Float[torch.Tensor, "batch pos vocab"] | None, dict[str, torch.Tensor]]:
    """One forward pass capturing the activations at ``names``; returns (logits or None, {name: tensor}).

    ``fwd_hooks`` are applied during the pass (ablations, patches); captured values are what the
    model computed *with* them, taken after every intervention on the same hook point. When
    ``need_logits`` is False the pass stops after the last capture. ``check`` raises on inf/NaN at
    real positions (``mask``). Captured tensors are detached copies in float32 (``to_float32``), on
    the device where they were made (a sharded model's block L stays on block L's GPU); ``ids`` are
    moved to the embedding's device (:func:`~mi_massive.core.devices.input_device`).
    ``route``: ``"bridge"`` (default) runs the bridge with its hook points; ``"auto"`` lets a residual-only
    capture with no ``fwd_hooks`` and no logits run the plain HF forward (:mod:`mi_massive.core.fastpath`,
    ~1.5x faster on CPU, values equal up to SDPA-vs-eager rounding), and ``"hf"`` insists on it.
    Analyses that compare runs with and without hooks keep the default, so both sides of a difference take
    the same route; ``$MI_MASSIVE_ROUTE=bridge`` forces hooks everywhere.
    """
    check_hook_names(model, names)
    route = pick_route(model, names, fwd_hooks=fwd_hooks, need_logits=need_logits, route=route)
    return _capture(model, ids, names, route=route, fwd_hooks=fwd_hooks, need_logits=need_logits, mask=mask,
                    check=check, to_float32=to_float32)


def _capture(model, ids: Int[torch.Tensor, "batch pos"], names: Sequence[str], *, route: str,
             fwd_hooks: Sequence[Hook], need_logits: bool, mask: Bool[torch.Tensor, "batch pos"] | None,
             check: bool, to_float32: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """:func:`run_capture` once the names are checked and the route (``"hf"`` or ``"bridge"``) is picked."""
    ids = ids.to(input_device(model))
    wanted = set(names)
    captured: dict[str, torch.Tensor] = {}
    source_dtypes: dict[str, torch.dtype] = {}

    def capturer(name: str) -> Callable[..., None]:
        # hook.name may be the bridge-native alias (e.g. blocks.0.hook_out), so key by the requested name
        def capture(tensor: torch.Tensor, hook) -> None:
            value = tensor.detach()
            source_dtypes[name] = value.dtype
            captured[name] = _kept(value, to_float32)
            if not need_logits and wanted.issubset(captured):
                raise _StopForward

        return capture

    logits = None
    if route == "hf":
        for name, value in run_residual(model, ids, names, mask=mask).items():
            source_dtypes[name] = value.dtype
            captured[name] = _kept(value, to_float32)
    else:
        with model.hooks(fwd_hooks=list(fwd_hooks) + [(name, capturer(name)) for name in names]):
            try:
                logits = model(ids)
            except _StopForward:
                pass
    if missing := wanted - set(captured):
        raise MiMassiveError(f"hook(s) never fired: {', '.join(sorted(missing))} (gated hooks need their setter)")
    if check:
        checked = {name: t for name, t in captured.items() if t.is_floating_point()}
        if logits is not None:
            checked["logits"] = logits
        for name in suspects(checked):
            check_finite(name, checked[name], mask, source_dtypes.get(name))
    return logits, captured


def iter_corpus(
    model,
    corpus: Corpus,
    names: Sequence[str],
    *,
    batch_size: int | None = 8,
    fwd_hooks: Sequence[Hook] | Callable[[range], Sequence[Hook]] = (),
    need_logits: bool = False,
    progress: bool | str = True,
    route: str = "bridge",
    to_float32: bool = True,
    check: bool = True,
) -> Iterator[tuple[range, Int[torch.Tensor, "batch pos"], Bool[torch.Tensor, "batch pos"], torch.Tensor | None, dict[str, torch.Tensor]]]:
    """Run the corpus batch by batch; yield (sequence indices, ids, real-token mask, logits, captures).

    Each batch's activations are yielded and then dropped, so memory stays at one batch's captures.
    ``fwd_hooks`` may be a function of the batch's sequence indices (per-batch interventions).
    ``progress`` shows a tqdm bar (a string sets its label). ``batch_size=None`` picks it from the
    corpus and the free device memory (:func:`~mi_massive.core.devices.auto_batch_size`).

    Out of memory: a batch that fails with an out-of-memory error is retried at half the size (and
    the rest of the run keeps the smaller size), down to one sequence; a single sequence that does not
    fit is a :class:`MiMassiveError` naming the device, the batch and the tokens. ``ids`` and ``mask``
    are yielded on the embedding's device (where a single-device model's captures are too; on a sharded
    model move the mask to each capture's device).
    ``route``, ``to_float32`` and ``check`` as in :func:`run_capture` (``to_float32=False`` keeps the model's
    dtype: half the capture memory of a bf16 model, no conversion pass; ``check=False`` leaves the inf/NaN
    test to the caller, as the scan's reduction does, so that nothing waits for the device here).
    """
    size = auto_batch_size(model, corpus) if batch_size is None else batch_size
    if size < 1:
        raise MiMassiveError(f"batch_size must be positive, got {size}")
    n_batches = (len(corpus) + size - 1) // size
    label = progress if isinstance(progress, str) else "forward"
    bar = tqdm(total=len(corpus), desc=label, unit="seq", disable=not progress or n_batches <= 1, leave=False)
    check_hook_names(model, names)
    picked = None if callable(fwd_hooks) else pick_route(model, names, fwd_hooks=fwd_hooks, need_logits=need_logits,
                                                         route=route)  # once, unless the hooks change per batch
    start = 0
    with bar if bar is not None else nullcontext():
        while start < len(corpus):
            indices = range(start, min(start + size, len(corpus)))
            ids, mask = corpus.batch(indices)
            hooks = fwd_hooks(indices) if callable(fwd_hooks) else fwd_hooks
            try:
                batch_route = picked or pick_route(model, names, fwd_hooks=hooks, need_logits=need_logits, route=route)
                logits, acts = _capture(model, ids, names, route=batch_route, fwd_hooks=hooks, need_logits=need_logits,
                                        mask=mask, to_float32=to_float32, check=check)
            except Exception as err:  # noqa: BLE001 (only out-of-memory is handled; the rest re-raised)
                if not is_out_of_memory(err):
                    raise
                where = input_device(model)
                if len(indices) == 1:
                    raise MiMassiveError(f"out of memory on {where} with a batch of 1 sequence of {ids.shape[1]} "
                                         f"tokens: use a shorter --seq-len, --dtype bfloat16 or more devices") from err
                size = max(1, len(indices) // 2)
                if where.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            where = input_device(model)
            yield indices, ids.to(where), mask.to(where), logits, acts
            bar.update(len(indices))
            start = indices.stop


# ------------------------------------------------------------- restarting a forward at a block
@contextmanager
def record_block_calls(model, layers: Sequence[int]) -> Iterator[dict[int, tuple[tuple, dict]]]:
    """Record the (args, kwargs) every block in ``layers`` is called with during a forward.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama")
    >>> _, ids, _ = next(mm.text_corpus(model, "The cat sat.", prepend_bos=True).batches(1))
    >>> with record_block_calls(model, [1]) as calls:
    ...     _ = model(ids)
    >>> tuple(calls[1][0][0].shape) == (1, ids.shape[1], model.cfg.d_model)
    True

    ``calls[layer] = (args, kwargs)``: ``args[0]`` is a detached copy of the residual entering the
    block [batch, pos, d_model]; the rest (attention mask, rotary embeddings, ...) is kept as passed.
    Used with :func:`run_blocks_from` to restart a forward pass at a block.
    """
    calls: dict[int, tuple[tuple, dict]] = {}
    handles = []
    for layer in layers:
        def pre(_module, args, kwargs, layer=layer):
            calls[layer] = (tuple(a.detach().clone() if i == 0 else a for i, a in enumerate(args)), dict(kwargs))
        handles.append(model.blocks[layer].register_forward_pre_hook(pre, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _expand(value: Any, n_rows: int, repeats: int) -> Any:
    """Repeat batch-shaped call arguments ``repeats`` times (row order: replica-major); drop KV caches."""
    if isinstance(value, torch.Tensor):
        if value.ndim >= 2 and value.shape[0] == n_rows and repeats > 1:
            return einops.repeat(value, "b ... -> (r b) ...", r=repeats)
        return value
    if isinstance(value, tuple):
        return tuple(_expand(v, n_rows, repeats) for v in value)
    if type(value).__name__.endswith("Cache"):
        return None
    return value


def final_logits(model, h: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... vocab"]:
    """Logits from a last-block residual: final norm, unembedding, then the architecture's own output transform
    (Gemma-2's final logit soft-capping; identity for most models), as the bridge's forward does."""
    logits = model.unembed(model.ln_final(h))
    transform = getattr(getattr(model, "adapter", None), "apply_output_logits_transform", None)
    return transform(logits) if callable(transform) else logits


@torch.no_grad()
def run_blocks_from(model, layer: int, hidden: Float[torch.Tensor, "rows pos d_model"],
                    call: dict[int, tuple[tuple, dict]], n_base_rows: int, names: Sequence[str], *,
                    fwd_hooks: Sequence[Hook] = (), last_layer: int | None = None, need_logits: bool = False
                    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Run blocks ``layer``..``last_layer`` on ``hidden`` (a cached residual entering block ``layer``).

    The counterpart of :func:`mi_massive.core.engine.run_capture` that starts mid-model: ``call`` holds the
    other block arguments recorded in a clean pass over ``n_base_rows`` sequences (repeated to match
    ``hidden``, whose rows are replica-major). Hooks fire as in a full forward. Returns (logits or
    None, captures at ``names``).

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> _, ids, _ = next(mm.text_corpus(model, "The cat sat.", prepend_bos=True).batches(1))
    >>> with record_block_calls(model, [1]) as calls:
    ...     _ = model(ids)
    >>> _, acts = run_blocks_from(model, 1, calls[1][0][0], calls, 1, ["blocks.1.hook_resid_post"], last_layer=1)
    >>> round(float(acts["blocks.1.hook_resid_post"][0, 0, 5]))
    3000
    """
    repeats = hidden.shape[0] // n_base_rows
    last = model.cfg.n_layers - 1 if need_logits or last_layer is None else last_layer
    captured: dict[str, torch.Tensor] = {}

    def capturer(name):
        def fn(x, hook=None):
            captured[name] = x.detach().float()
        return fn

    hooks = list(fwd_hooks) + [(n, capturer(n)) for n in names]
    h = hidden
    with model.hooks(fwd_hooks=hooks):
        for j in range(layer, last + 1):
            args, kwargs = call[j]
            args = tuple(_expand(a, n_base_rows, repeats) for a in args[1:])
            kwargs = {k: (False if k == "use_cache" else _expand(v, n_base_rows, repeats)) for k, v in kwargs.items()}
            out = model.blocks[j](h, *args, **kwargs)
            h = out[0] if isinstance(out, tuple) else out
        logits = final_logits(model, h) if need_logits else None
    if missing := set(names) - set(captured):
        raise MiMassiveError(f"hook(s) never fired: {', '.join(sorted(missing))}")
    return logits, captured
