"""Mitigation variants built by patching a Hugging Face model before it is bridged.

* :mod:`~mi_massive.core.variants.kv_bias` — learnable k', v' per (KV) head, prepended on the key axis;
* :mod:`~mi_massive.core.variants.dyt` — every norm replaced by gamma * tanh(alpha x) + beta;
* :mod:`~mi_massive.core.variants.tvr` — target-variance rescaling of the block matrices;
* :mod:`~mi_massive.core.variants.register` — a learnable register (sink) vector in the BOS slot;
* :mod:`~mi_massive.core.variants.build` — apply a :class:`VariantSpec` and bridge the result;
* :mod:`~mi_massive.core.variants.io` — save/load as safetensors + ``mi_massive_variant.json``.

Every variant keeps all TransformerLens hooks; see ``docs/variants.md`` for hook shapes.
"""

from mi_massive.core.variants.build import apply_variant, bridge_hook, bridge_variant, detect_structure, unwrap_hf
from mi_massive.core.variants.dyt import DyT, DyTAlpha, add_dyt, set_dyt_activation
from mi_massive.core.variants.kv_bias import add_kv_bias, has_kv_bias, set_kv_bias_masked
from mi_massive.core.variants.register import RegisterEmbedding, add_register, register_token_id
from mi_massive.core.variants.spec import NAMED, VariantSpec
from mi_massive.core.variants.tvr import TVRConfig, TVRRecord, tvr_rescale

__all__ = [
    "DyT", "DyTAlpha", "NAMED", "RegisterEmbedding", "TVRConfig", "TVRRecord", "VariantSpec", "add_dyt",
    "add_kv_bias", "add_register", "apply_variant", "bridge_hook", "bridge_variant", "detect_structure",
    "has_kv_bias", "load_variant", "register_token_id", "save_variant", "set_dyt_activation",
    "set_kv_bias_masked", "tvr_rescale", "unwrap_hf",
]


def __getattr__(name):  # io imports safetensors/transformers lazily
    if name in ("save_variant", "load_variant"):
        from mi_massive.core.variants import io

        return getattr(io, name)
    raise AttributeError(name)
