"""Independent references for tests: a plain ``transformers`` model read through torch forward hooks.

The bridge is never involved, so a test comparing against these values checks the package against
``transformers`` itself.
"""

from __future__ import annotations

from typing import Sequence

import torch


def first(output):
    """A module's main output (decoder blocks return tuples)."""
    return output[0] if isinstance(output, tuple) else output


def hooked_forward(model: torch.nn.Module, ids: torch.Tensor, handles: Sequence) -> None:
    """Run ``model(ids)`` without gradients, then remove the hook ``handles`` registered for it."""
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()


def block_outputs(model: torch.nn.Module, blocks: Sequence[torch.nn.Module], ids: torch.Tensor) -> list[torch.Tensor]:
    """The output of each of ``blocks`` (the residual stream after the block) on ``ids``, in order."""
    outs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, o: outs.append(first(o).detach())) for b in blocks]
    hooked_forward(model, ids, handles)
    return outs
