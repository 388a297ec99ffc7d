"""Target-variance rescaling (TVR; Owen et al. 2025, ``weight_rescaling/callbacks/tvr.py``, algorithm "zscore").

For every 2-D weight W inside the decoder blocks (GPT-2: ``c_attn``, ``attn.c_proj``, ``c_fc``, ``mlp.c_proj``;
Llama: q/k/v/o and gate/up/down), with mu = mean(W) and sigma = std(W) (unbiased):

* target sigma_t(l) = ``target_std``, or ``target_std / sqrt(l)`` with ``scale_with_depth`` (l = 1-based block);
* if sigma / sigma_t(l) > ``ratio_threshold``: W := (W - mu) / sigma * sigma_t(l) + mu, and the owning
  module's bias (if any) is set to zero.

Embeddings, the unembedding, norms and other non-2-D parameters (KV bias, DyT alpha) are never touched.
Applied every ``interval`` optimiser steps during training (:class:`mi_massive.training.TVRCallback`) or once
with :func:`tvr_rescale`. Defaults follow the spec (§2.8): target 0.01, interval 50, threshold 1.2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mi_massive.errors import MiMassiveError


@dataclass(frozen=True)
class TVRConfig:
    """TVR parameters: std units are the weights' own units (dimensionless scale of the matrix entries)."""

    target_std: float = 0.01
    ratio_threshold: float = 1.2
    interval: int = 50
    scale_with_depth: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_std) and math.isfinite(self.ratio_threshold)):
            raise MiMassiveError(f"TVR: target_std and ratio_threshold must be finite numbers, got "
                                 f"{self.target_std} and {self.ratio_threshold}")
        if self.target_std <= 0 or self.ratio_threshold <= 0 or self.interval < 1:
            raise MiMassiveError("TVR: target_std and ratio_threshold must be > 0 and interval >= 1")

    def target(self, layer_1based: int) -> float:
        return self.target_std / math.sqrt(layer_1based) if self.scale_with_depth else self.target_std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TVRRecord:
    """One matrix visited by TVR: its std before/after and whether it was rescaled."""

    name: str
    layer: int
    std_before: float
    mean: float
    target: float
    rescaled: bool
    std_after: float


def decoder_blocks(model: nn.Module) -> list[nn.Module]:
    root = getattr(model, "original_model", model)
    if hasattr(root, "transformer"):
        return list(root.transformer.h)
    if hasattr(root, "model") and hasattr(root.model, "layers"):
        return list(root.model.layers)
    raise MiMassiveError(f"TVR: unsupported model class {type(root).__name__}")


def block_matrices(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module in ``block`` holding a 2-D ``weight`` (norms and DyT are 1-D)."""
    out = []
    for name, mod in block.named_modules():
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if isinstance(w, torch.Tensor) and w.ndim == 2:
            out.append((name, mod))
    return out


@torch.no_grad()
def tvr_rescale(model: nn.Module, config: TVRConfig = TVRConfig()) -> list[TVRRecord]:
    """Apply TVR once to ``model`` (HF model or a bridge; in place); one record per 2-D block weight."""
    records = []
    for l0, block in enumerate(decoder_blocks(model)):
        target = config.target(l0 + 1)
        for name, mod in block_matrices(block):
            w = mod.weight
            mu, sigma = w.mean().item(), w.std().item()
            rescale = sigma / target > config.ratio_threshold
            if rescale:
                w.sub_(mu).div_(sigma).mul_(target).add_(mu)
                bias = mod._parameters.get("bias")
                if isinstance(bias, torch.Tensor):
                    bias.zero_()
            records.append(TVRRecord(name=f"{l0}.{name}", layer=l0, std_before=sigma, mean=mu, target=target,
                                     rescaled=rescale, std_after=w.std().item()))
    return records
