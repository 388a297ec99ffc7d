"""Apply a :class:`VariantSpec` to a Hugging Face model and wrap it in a bridge that computes the same thing.

The HF model is the ground truth (it is what gets trained and saved); the bridge gets matching
components through ``post_adapter_hook`` because it recomputes attention and normalisation itself.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from mi_massive.errors import MiMassiveError
from mi_massive.core.variants.dyt import DyT, add_dyt, use_dyt_bridge
from mi_massive.core.variants.kv_bias import add_kv_bias, has_kv_bias, use_kv_bias_bridge
from mi_massive.core.variants.register import RegisterEmbedding, add_register
from mi_massive.core.variants.spec import VariantSpec


# structural component -> block layouts (mi_massive.core.loading.toy.plant_family) it is built and tested on
SUPPORTED = {"kv_bias": ("gpt2", "llama", "phi3", "gemma2", "olmo2"), "dyt": ("gpt2", "llama", "phi3"),
             "register": ("gpt2", "llama", "phi3", "olmo2", "gptj")}
_WHY = {("kv_bias", "gptj"): "its attention bypasses transformers' attention functions, so a KV bias would be ignored",
        ("dyt", "gemma2"): "it has post-sublayer norms and DyT here replaces pre-norm blocks' norms only",
        ("dyt", "olmo2"): "it has post-sublayer norms and DyT here replaces pre-norm blocks' norms only",
        ("dyt", "gptj"): "its parallel block shares one norm between attention and MLP",
        ("dyt", "falcon"): "its parallel block shares one norm between attention and MLP",
        ("register", "gemma2"): "it scales its embeddings by sqrt(d_model)"}


def check_supported(hf_model: nn.Module, spec: VariantSpec) -> None:
    """Raise a one-line :class:`MiMassiveError` naming the architecture when a structural part of ``spec``
    is not built for ``hf_model``'s block layout (see :data:`SUPPORTED`); unknown layouts are left to each part."""
    from mi_massive.core.loading.toy import plant_family

    try:
        family = plant_family(hf_model)
    except MiMassiveError:
        return
    for part in ("kv_bias", "dyt", "register"):
        if getattr(spec, part) and family not in SUPPORTED[part]:
            why = _WHY.get((part, family), f"supported layouts: {', '.join(SUPPORTED[part])}")
            raise MiMassiveError(f"variant '{part}' is not available for {type(hf_model).__name__}: {why}")


def apply_variant(hf_model: nn.Module, spec: VariantSpec, *, seed: int = 0) -> nn.Module:
    """Add the structural parts of ``spec`` to ``hf_model`` in place (KV bias, DyT, register).

    New parameters are drawn from a generator seeded with ``seed`` (same seed -> same parameters).
    TVR is not structural: it is applied by the training loop or :func:`mi_massive.core.variants.tvr_rescale`.
    A part the architecture does not support is a one-line error (:func:`check_supported`).
    """
    check_supported(hf_model, spec)
    gen = torch.Generator().manual_seed(seed)
    if spec.kv_bias:
        add_kv_bias(hf_model, init_std=spec.kv_bias_init_std, generator=gen)
    if spec.dyt:
        add_dyt(hf_model, spec.dyt_alpha)
    if spec.register:
        add_register(hf_model, init_std=spec.register_init_std, generator=gen)
    return hf_model


def detect_structure(model: nn.Module) -> dict[str, bool]:
    """Which structural parts an HF model (or bridge) carries."""
    root = getattr(model, "original_model", model)
    mods = list(root.modules())
    return {"kv_bias": has_kv_bias(root), "dyt": any(isinstance(m, DyT) for m in mods),
            "register": any(isinstance(m, RegisterEmbedding) for m in mods)}


def bridge_hook(spec: VariantSpec | dict[str, bool]) -> Callable[[Any], None] | None:
    """The ``post_adapter_hook`` that makes a bridge compute what the patched HF model computes."""
    flags = spec if isinstance(spec, dict) else {"kv_bias": spec.kv_bias, "dyt": spec.dyt}
    steps = []
    if flags.get("kv_bias"):
        steps.append(use_kv_bias_bridge)
    if flags.get("dyt"):
        steps.append(use_dyt_bridge)
    if not steps:
        return None  # the register lives in the embedding module, which the bridge calls as is

    def hook(adapter) -> None:
        for step in steps:
            step(adapter)

    return hook


def bridge_variant(hf_model: nn.Module, tokenizer, *, name: str, copy_model: bool = True):
    """A bridge (compat mode, raw weights) around a patched HF model; structure read from the model.

    With ``copy_model`` (default) the bridge wraps a deep copy, so ``hf_model`` stays a plain HF model
    (bridging edits the module tree in place).
    """
    from mi_massive.core.loading.bridge import bridge_from_hf

    model = copy.deepcopy(hf_model) if copy_model else hf_model
    return bridge_from_hf(model, tokenizer, name=name, post_adapter_hook=bridge_hook(detect_structure(model)))


def unwrap_hf(model: nn.Module) -> nn.Module:
    """The HF model of a bridge (or the model itself)."""
    root = getattr(model, "original_model", model)
    if not hasattr(root, "config"):
        raise MiMassiveError("expected a Hugging Face model or a TransformerBridge")
    return root
