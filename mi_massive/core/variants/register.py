"""Sink / register token (Sun et al. 2024, ``model_sink.py`` with ``num_reg=1``).

Sun et al. prepend a learnable vector r in R^{d_model} (init N(0, 0.02^2)) to the embedded sequence; it gets
no position embedding and the loss ignores its prediction. Here the register occupies the **BOS slot**:
every corpus used with a register model starts with BOS (``prepend_bos=True``), and the token embedding
of the BOS id is replaced by r (a separate parameter, not tied to the unembedding). Hook shapes therefore
equal the input length and position 0 of every hook is the register.

Equivalence with Sun et al.: in GPT-2 the register slot receives r + wpe[0]; since no real token ever
uses position 0 in a register model, r + wpe[0] is one free learnable vector (a reparametrisation), and
the real tokens use the position rows 1.. instead of 0... In Llama the register sits at RoPE position 0
(rotary encoding is relative, so this only fixes its offset to the real tokens). The training loss of
this package never scores the prediction made at position 0 (for every variant), as in Sun et al.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from mi_massive.errors import MiMassiveError


class RegisterEmbedding(nn.Embedding):
    """Token embedding whose ``register_token_id`` rows are the learnable ``register_vector`` [d_model]."""

    register_token_id: int

    def forward(self, input_ids: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos d"]:
        out = F.embedding(input_ids, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                          self.scale_grad_by_freq, self.sparse)
        is_reg = (input_ids == self.register_token_id)[..., None]
        return torch.where(is_reg, self.register_vector.to(out.dtype), out)


def input_embedding(hf_model: nn.Module) -> nn.Embedding:
    if hasattr(hf_model, "transformer"):
        return hf_model.transformer.wte
    if hasattr(hf_model, "model") and hasattr(hf_model.model, "embed_tokens"):
        return hf_model.model.embed_tokens
    raise MiMassiveError(f"register token: unsupported model class {type(hf_model).__name__}")


def add_register(hf_model: nn.Module, *, token_id: int | None = None, init_std: float = 0.02,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Turn the BOS slot into a learnable register r ~ N(0, init_std^2) (in place; weights keep their keys).

    ``token_id`` defaults to the config's BOS id. The embedding module's class becomes
    :class:`RegisterEmbedding` (a subclass of ``nn.Embedding``), so tying with the unembedding is kept
    for all other tokens and the state-dict gains one key, ``...register_vector``.
    """
    emb = input_embedding(hf_model)
    if isinstance(emb, RegisterEmbedding):
        raise MiMassiveError("the model already has a register token")
    if type(emb) is not nn.Embedding:
        raise MiMassiveError(f"register token: unexpected embedding class {type(emb).__name__}")
    tid = hf_model.config.bos_token_id if token_id is None else token_id
    if tid is None:
        raise MiMassiveError("register token: the model config has no bos_token_id; pass token_id")
    vec = torch.randn(emb.embedding_dim, generator=generator) * init_std
    emb.__class__ = RegisterEmbedding
    emb.register_token_id = int(tid)
    emb.register_vector = nn.Parameter(vec.to(device=emb.weight.device, dtype=emb.weight.dtype))
    return hf_model


def register_token_id(model: nn.Module) -> int | None:
    """The register's token id of an HF model or bridge, or None when it has no register."""
    root = getattr(model, "original_model", model)
    for mod in root.modules():
        if isinstance(mod, RegisterEmbedding):
            return mod.register_token_id
    return None
