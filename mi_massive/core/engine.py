"""Running a bridge with hooks: the one place where forward passes and activation capture happen.

Analyses never register hooks themselves; they ask this module for activations (by TransformerLens
hook name, with optional intervention hooks in ``fwd_hooks``) and get plain tensors back. Two things
keep runs cheap:

* only the requested hooks are captured (the ``names_filter`` idea), never a full cache;
* when no logits are needed the forward pass stops as soon as the last requested hook has fired,
  so later blocks, the final norm and the unembedding (49152 x 576 for SmolLM2) are skipped.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError, NumericalOverflowError

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once every requested activation is captured."""


def resid_hook_names(n_layers: int, *, include_embed: bool = True) -> list[str]:
    """``blocks.0.hook_resid_pre`` (embeddings, optional) then ``blocks.L.hook_resid_post`` for every block."""
    names = ["blocks.0.hook_resid_pre"] if include_embed else []
    return names + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def check_hook_names(model, names: Iterable[str]) -> None:
    """Raise a clear error for a hook name the model does not have."""
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise MiMassiveError(f"unknown hook name(s): {', '.join(missing[:5])}")


MASKED_MINUS_INF = ("attn_scores",)  # hooks where -inf marks masked keys by design


def check_finite(name: str, tensor: torch.Tensor, mask: Bool[torch.Tensor, "batch pos"] | None = None,
                 source_dtype: torch.dtype | None = None) -> None:
    """Raise :class:`NumericalOverflowError` if ``tensor`` holds inf/NaN at real (unmasked) positions.

    Attention scores legitimately hold -inf at masked (future) keys; only NaN and +inf count there.
    """
    bad = ~torch.isfinite(tensor)
    if any(tag in name for tag in MASKED_MINUS_INF):
        bad &= tensor != float("-inf")
    if mask is not None and bad.ndim >= 2 and bad.shape[:2] == mask.shape:
        bad = bad & mask.view(*mask.shape, *([1] * (bad.ndim - 2)))
    if bad.any():
        where = bad.nonzero()[0].tolist()
        hint = ("the values exceed the dtype's range (float16 max is 65,504): rerun with --dtype float32"
                if (source_dtype or tensor.dtype) in (torch.float16, torch.bfloat16) else
                "the model itself produced non-finite values")
        raise NumericalOverflowError(f"inf/NaN in {name} at index {where}: {hint}")


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
) -> tuple[Float[torch.Tensor, "batch pos vocab"] | None, dict[str, torch.Tensor]]:
    """One forward pass capturing the activations at ``names``; returns (logits or None, {name: tensor}).

    ``fwd_hooks`` are applied during the pass (ablations, patches); captured values are what the
    model computed *with* them, taken after every intervention on the same hook point. When
    ``need_logits`` is False the pass stops after the last capture. ``check`` raises on inf/NaN at
    real positions (``mask``). Captured tensors are detached copies in float32 (``to_float32``).
    """
    check_hook_names(model, names)
    wanted = set(names)
    captured: dict[str, torch.Tensor] = {}
    source_dtypes: dict[str, torch.dtype] = {}

    def capturer(name: str) -> Callable[..., None]:
        # hook.name may be the bridge-native alias (e.g. blocks.0.hook_out), so key by the requested name
        def capture(tensor: torch.Tensor, hook) -> None:
            value = tensor.detach()
            source_dtypes[name] = value.dtype
            captured[name] = value.float() if to_float32 and value.is_floating_point() else value.clone()
            if not need_logits and wanted.issubset(captured):
                raise _StopForward

        return capture

    hooks = list(fwd_hooks) + [(name, capturer(name)) for name in names]
    logits = None
    with model.hooks(fwd_hooks=hooks):
        try:
            logits = model(ids)
        except _StopForward:
            pass
    if missing := wanted - set(captured):
        raise MiMassiveError(f"hook(s) never fired: {', '.join(sorted(missing))} (gated hooks need their setter)")
    if check:
        for name, tensor in captured.items():
            if tensor.is_floating_point():
                check_finite(name, tensor, mask, source_dtypes[name])
        if logits is not None:
            check_finite("logits", logits, mask)
    return logits, captured


def iter_corpus(
    model,
    corpus: Corpus,
    names: Sequence[str],
    *,
    batch_size: int = 8,
    fwd_hooks: Sequence[Hook] | Callable[[range], Sequence[Hook]] = (),
    need_logits: bool = False,
    progress: bool | str = True,
) -> Iterator[tuple[range, Int[torch.Tensor, "batch pos"], Bool[torch.Tensor, "batch pos"], torch.Tensor | None, dict[str, torch.Tensor]]]:
    """Run the corpus batch by batch; yield (sequence indices, ids, real-token mask, logits, captures).

    Each batch's activations are yielded and then dropped, so memory stays at one batch's captures.
    ``fwd_hooks`` may be a function of the batch's sequence indices (per-batch interventions).
    ``progress`` shows a tqdm bar (a string sets its label).
    """
    n_batches = (len(corpus) + batch_size - 1) // batch_size
    label = progress if isinstance(progress, str) else "forward"
    bar = tqdm(total=len(corpus), desc=label, unit="seq", disable=not progress or n_batches <= 1, leave=False)
    with bar if bar is not None else nullcontext():
        for indices, ids, mask in corpus.batches(batch_size):
            hooks = fwd_hooks(indices) if callable(fwd_hooks) else fwd_hooks
            logits, acts = run_capture(model, ids, names, fwd_hooks=hooks, need_logits=need_logits, mask=mask)
            yield indices, ids, mask, logits, acts
            bar.update(len(indices))
