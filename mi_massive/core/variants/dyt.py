"""Dynamic Tanh (DyT, Zhu et al. 2025): every LayerNorm/RMSNorm becomes ``gamma * tanh(alpha * x) + beta``.

``alpha`` is a learnable scalar (initial value ``alpha0``, default 0.5; the Llama recipe uses a different
``alpha0`` for the norm before attention, before the MLP and the final norm), ``gamma``/``beta`` are
per-channel (``d_model``). ``gamma`` starts from the replaced norm's weight (ones in a fresh model),
``beta`` from its bias (zeros when it has none), so a pretrained model keeps its per-channel gains.

The bridge rebuilds GPT-2's LayerNorm from ``.weight``/``.bias`` and reports RMS statistics for Llama, so a
matching bridge component (:class:`DyTBridge`) replaces ``ln1``, ``ln2`` and ``ln_final``. Its hooks:
``hook_in`` [b, p, d] (x), ``hook_normalized`` [b, p, d] (tanh(alpha x), before the affine map) and
``hook_out`` [b, p, d]. There is no ``hook_scale`` (DyT has no statistic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from mi_massive.errors import MiMassiveError

ACTIVATIONS = {"tanh": torch.tanh, "identity": lambda x: x}


class DyT(nn.Module):
    """y = weight * act(alpha * x) + bias, act = tanh (``activation="identity"`` is for structure tests)."""

    def __init__(self, d_model: int, alpha0: float = 0.5, *, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, activation: str = "tanh"):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(alpha0)))
        self.weight = nn.Parameter(weight.detach().clone() if weight is not None else torch.ones(d_model))
        self.bias = nn.Parameter(bias.detach().clone() if bias is not None else torch.zeros(d_model))
        self.activation = activation

    def squash(self, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
        """act(alpha * x): the normalised value before the per-channel affine map."""
        if self.activation not in ACTIVATIONS:
            raise MiMassiveError(f"unknown DyT activation '{self.activation}'")
        return ACTIVATIONS[self.activation](self.alpha * x)

    def forward(self, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
        return self.squash(x) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"d={self.weight.shape[0]}, alpha={self.alpha.item():.3g}, act={self.activation}"


@dataclass(frozen=True)
class DyTAlpha:
    """Initial alpha per norm type (None = use ``default``)."""

    default: float = 0.5
    attn: float | None = None
    mlp: float | None = None
    final: float | None = None

    def __post_init__(self) -> None:
        import math

        for kind in ("default", "attn", "mlp", "final"):
            value = getattr(self, kind)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise MiMassiveError(f"DyT alpha0 ({kind}) must be a finite number, got {value}")

    def of(self, kind: str) -> float:
        value = getattr(self, kind)
        return self.default if value is None else value


def norm_slots(hf_model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent module, attribute, kind) of every norm: kind is ``attn``, ``mlp`` or ``final``."""
    if hasattr(hf_model, "transformer"):
        slots = [(blk, name, kind) for blk in hf_model.transformer.h for name, kind in (("ln_1", "attn"), ("ln_2", "mlp"))]
        return slots + [(hf_model.transformer, "ln_f", "final")]
    if hasattr(hf_model, "model") and hasattr(hf_model.model, "layers"):
        slots = [(blk, name, kind) for blk in hf_model.model.layers
                 for name, kind in (("input_layernorm", "attn"), ("post_attention_layernorm", "mlp"))]
        return slots + [(hf_model.model, "norm", "final")]
    raise MiMassiveError(f"DyT: unsupported model class {type(hf_model).__name__} (GPT-2 or Llama shapes only)")


def add_dyt(hf_model: nn.Module, alpha: DyTAlpha | float = 0.5) -> nn.Module:
    """Replace every norm by :class:`DyT` (in place); gains/biases are copied from the old norm."""
    alpha = alpha if isinstance(alpha, DyTAlpha) else DyTAlpha(default=float(alpha))
    param = next(hf_model.parameters())
    for parent, attr, kind in norm_slots(hf_model):
        old = getattr(parent, attr)
        if isinstance(old, DyT):
            raise MiMassiveError("the model already uses DyT")
        weight = getattr(old, "weight", None)
        d = weight.shape[0] if weight is not None else hf_model.config.hidden_size
        bias = getattr(old, "bias", None)
        new = DyT(d, alpha.of(kind), weight=weight, bias=bias if isinstance(bias, torch.Tensor) else None)
        setattr(parent, attr, new.to(device=param.device, dtype=param.dtype))
    return hf_model


def set_dyt_activation(model: nn.Module, activation: str) -> None:
    """Switch every DyT's activation (``tanh`` or ``identity``) in an HF model or a bridge built on it."""
    if activation not in ACTIVATIONS:
        raise MiMassiveError(f"unknown DyT activation '{activation}'")
    mods = [m for m in getattr(model, "original_model", model).modules() if isinstance(m, DyT)]
    if not mods:
        raise MiMassiveError("the model has no DyT layers")
    for m in mods:
        m.activation = activation


def _dyt_bridge_class():
    from transformer_lens.model_bridge.generalized_components import NormalizationBridge

    class DyTBridge(NormalizationBridge):
        """Bridge for :class:`DyT`: hook_in (x) -> hook_normalized (act(alpha x)) -> affine -> hook_out."""

        def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            m = self.original_component
            x = self.hook_in(x)
            return self.hook_out(self.hook_normalized(m.squash(x)) * m.weight + m.bias)

    return DyTBridge


_BRIDGE_CLS: list[type] = []


def dyt_bridge_class() -> type:
    """The :class:`DyTBridge` class (built lazily so importing this module does not import TransformerLens)."""
    if not _BRIDGE_CLS:
        _BRIDGE_CLS.append(_dyt_bridge_class())
    return _BRIDGE_CLS[0]


def use_dyt_bridge(adapter) -> None:
    """``post_adapter_hook``: DyT bridges in place of ``ln1``, ``ln2`` and ``ln_final`` (same HF names)."""
    cls = dyt_bridge_class()
    subs = adapter.component_mapping["blocks"].submodules
    for key in ("ln1", "ln2"):
        subs[key] = cls(name=subs[key].name, config=adapter.cfg)
    adapter.component_mapping["ln_final"] = cls(name=adapter.component_mapping["ln_final"].name, config=adapter.cfg)
