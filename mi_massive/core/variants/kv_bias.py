"""Attention KV bias (Sun et al. 2024): a learnable key k' and value v' per (KV) head, visible to every query.

Each attention layer gets parameters ``k_bias`` and ``v_bias`` of shape ``[1, n_kv_heads, 1, d_head]``
(``n_kv_heads`` = the number of key/value heads: GPT-2 has one per query head, Llama/GQA shares them).
They are prepended on the key/value position axis after every positional transform (Llama: after RoPE,
before ``repeat_kv``), carry no position, and are visible to every query:

    softmax(Q [k'; K]^T / sqrt(d_head)) [v'; V]

Two places compute attention and both must see the bias (a TransformerBridge recomputes attention
itself, so an HF-only change would be ignored silently):

* the Hugging Face side: an attention function registered with ``AttentionInterface`` (and a mask
  function with ``AttentionMaskInterface``) under the name ``"kv_bias"``;
* the bridge side: the attention bridge's class is swapped for a subclass that prepends the same
  parameters in ``_update_kv_cache`` (the seam after RoPE and before the scores) and widens the mask.

Observability: ``blocks.L.attn.hook_attn_scores`` and ``blocks.L.attn.hook_pattern`` have shape
``[batch, n_heads, q_pos, 1 + k_pos]``; **key column 0 is the bias slot** and column ``1 + j`` is token j.
``hook_k`` / ``hook_v`` (and ``hook_rot_k``) show the real keys only (``[batch, pos, n_kv_heads, d_head]``).

Ablation switch: :func:`set_kv_bias_masked` forces the bias slot's logit to -inf in both the HF model
and the bridge (the model then computes exactly what the unpatched model computes).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn

from mi_massive.errors import MiMassiveError

ATTN_IMPL = "kv_bias"
_REGISTERED = False


def attention_modules(hf_model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block (GPT-2 ``attn``, Llama ``self_attn``)."""
    if hasattr(hf_model, "transformer"):
        return [blk.attn for blk in hf_model.transformer.h]
    if hasattr(hf_model, "model") and hasattr(hf_model.model, "layers"):
        return [blk.self_attn for blk in hf_model.model.layers]
    raise MiMassiveError(f"KV bias: unsupported model class {type(hf_model).__name__} (GPT-2 or Llama shapes only)")


def kv_geometry(hf_model: nn.Module) -> tuple[int, int]:
    """(number of key/value heads, head size) of a GPT-2 or Llama config."""
    cfg = hf_model.config
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    return int(n_kv), int(d_head)


def _slot_visible(module: nn.Module) -> bool:
    return not bool(getattr(module, "kv_bias_masked", False))


def _pad_mask(mask: torch.Tensor, visible: bool) -> torch.Tensor:
    """Add the bias-slot column in front of a 4-D mask (bool: True = visible; float: additive)."""
    if mask.dtype == torch.bool:
        return F.pad(mask, (1, 0), value=visible)
    return F.pad(mask, (1, 0), value=0.0 if visible else float("-inf"))


def _causal_mask_with_slot(q_len: int, kv_len: int, visible: bool, device) -> torch.Tensor:
    """Bool mask [1, 1, q, 1 + kv]: slot column (visible or not), then causal over the kv positions."""
    causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril(diagonal=kv_len - q_len)
    slot = torch.full((q_len, 1), visible, dtype=torch.bool, device=device)
    return torch.cat([slot, causal], dim=1)[None, None]


def prepend_kv_bias(
    module: nn.Module,
    k: Float[torch.Tensor, "batch kv_heads pos d_head"],
    v: Float[torch.Tensor, "batch kv_heads pos d_head"],
) -> tuple[Float[torch.Tensor, "batch kv_heads slot_pos d_head"], Float[torch.Tensor, "batch kv_heads slot_pos d_head"]]:
    """[k'; K] and [v'; V] along the position axis (``slot_pos = 1 + pos``)."""
    n = k.shape[0]
    k_b = module.k_bias.to(k.dtype).expand(n, -1, -1, -1)
    v_b = module.v_bias.to(v.dtype).expand(n, -1, -1, -1)
    return torch.cat([k_b, k], dim=2), torch.cat([v_b, v], dim=2)


def kv_bias_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """HF attention function: the model's own eager attention over [k'; K], [v'; V].

    ``query``/``key``/``value`` are [batch, heads, pos, d_head] (Llama: K/V with the KV heads, after RoPE).
    """
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward")
    key, value = prepend_kv_bias(module, key, value)
    visible = _slot_visible(module)
    if attention_mask is None:
        mask = _causal_mask_with_slot(query.shape[-2], key.shape[-2] - 1, visible, query.device)
        attention_mask = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill(~mask, float("-inf"))
    else:
        attention_mask = _pad_mask(attention_mask, visible)
        if attention_mask.dtype == torch.bool:  # eager functions add the mask: make it additive
            attention_mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                ~attention_mask, torch.finfo(query.dtype).min)
    kwargs.pop("is_causal", None)
    return eager(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


def register_kv_bias_attention() -> None:
    """Register the ``"kv_bias"`` attention and mask functions with transformers (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(ATTN_IMPL, kv_bias_attention)
    AttentionMaskInterface.register(ATTN_IMPL, eager_mask)  # without it the model passes no padding mask
    _REGISTERED = True


def add_kv_bias(hf_model: nn.Module, *, init_std: float = 0.02, generator: torch.Generator | None = None) -> nn.Module:
    """Give every attention layer k', v' ~ N(0, init_std^2) of shape [1, n_kv_heads, 1, d_head] (in place)."""
    register_kv_bias_attention()
    n_kv, d_head = kv_geometry(hf_model)
    param = next(hf_model.parameters())
    for attn in attention_modules(hf_model):
        if hasattr(attn, "k_bias"):
            raise MiMassiveError("the model already has a KV bias")
        shape = (1, n_kv, 1, d_head)
        k = torch.randn(shape, generator=generator) * init_std
        v = torch.randn(shape, generator=generator) * init_std
        attn.k_bias = nn.Parameter(k.to(device=param.device, dtype=param.dtype))
        attn.v_bias = nn.Parameter(v.to(device=param.device, dtype=param.dtype))
        attn.kv_bias_masked = False
    hf_model.set_attn_implementation(ATTN_IMPL)
    return hf_model


def has_kv_bias(model: nn.Module) -> bool:
    """True when the (HF or bridged) model carries KV-bias parameters."""
    return any(name.endswith("k_bias") for name, _ in model.named_parameters())


def set_kv_bias_masked(model: nn.Module, masked: bool = True) -> None:
    """Hide (``masked=True``: logit -inf) or show the bias slot, in an HF model or a bridge built on it."""
    root = getattr(model, "original_model", model)
    found = False
    for mod in root.modules():
        if hasattr(mod, "k_bias") and isinstance(getattr(mod, "k_bias"), nn.Parameter):
            mod.kv_bias_masked = bool(masked)
            found = True
    if not found:
        raise MiMassiveError("the model has no KV bias")


class KVBiasBridgeMixin:
    """Bridge-side KV bias: mixed in front of the architecture's attention bridge class.

    ``_update_kv_cache`` runs after the head split and RoPE, before GQA expansion and the scores; the
    HF cache (generation) keeps real keys only, and k', v' are prepended on every call.
    """

    def _update_kv_cache(self, k: torch.Tensor, v: torch.Tensor, **kwargs: Any):
        k, v = super()._update_kv_cache(k, v, **kwargs)
        return prepend_kv_bias(self.original_component, k, v)

    def _apply_reconstruct_attention_mask(self, attn_scores, attention_mask, seq_len, q_seq_len=None):
        visible = _slot_visible(self.original_component)
        q_len = attn_scores.shape[-2] if q_seq_len is None else q_seq_len
        if attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[-1] == seq_len - 1:
            attention_mask = _pad_mask(attention_mask, visible)
        elif attention_mask is None:
            attention_mask = _causal_mask_with_slot(q_len, seq_len - 1, visible, attn_scores.device)
        elif attention_mask.ndim < 4:
            raise MiMassiveError("KV bias: a 2-D attention mask reached the bridge; pass padding through the model")
        return super()._apply_reconstruct_attention_mask(attn_scores, attention_mask, seq_len, q_seq_len)


_MIXED: dict[type, type] = {}


def kv_bias_bridge_class(base: type) -> type:
    """The attention bridge class ``base`` with :class:`KVBiasBridgeMixin` in front (cached)."""
    if issubclass(base, KVBiasBridgeMixin):
        return base
    if base not in _MIXED:
        _MIXED[base] = type(f"KVBias{base.__name__}", (KVBiasBridgeMixin, base), {})
    return _MIXED[base]


def use_kv_bias_bridge(adapter) -> None:
    """``post_adapter_hook``: swap the block attention bridge for its KV-bias subclass.

    GPT-2 uses ``JointQKVAttentionBridge``, Llama ``PositionEmbeddingsAttentionBridge``; both call
    ``_update_kv_cache`` after RoPE and before the scores, so the same mixin serves both.
    """
    attn = adapter.component_mapping["blocks"].submodules["attn"]
    attn.__class__ = kv_bias_bridge_class(type(attn))
