"""Saving and loading variants: ``model.safetensors`` + HF ``config.json`` + tokenizer + ``mi_massive_variant.json``.

``mi_massive.load_model(path)`` recognises a directory holding ``mi_massive_variant.json`` and calls
:func:`load_variant`, which rebuilds the HF model from ``config.json``, re-applies the variant's
structure (KV bias, DyT, register), loads the weights (strict: every key must match) and bridges it with
the matching components. A save -> load round trip is bit-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mi_massive.errors import MiMassiveError
from mi_massive.core.loading.specs import VARIANT_CONFIG, parse_dtype
from mi_massive.core.io import read_json, write_json
from mi_massive.core.variants.build import apply_variant, bridge_variant, detect_structure, unwrap_hf
from mi_massive.core.variants.spec import VariantSpec

WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_plain(hf: nn.Module) -> None:
    """Refuse a model whose module tree was rewritten by a bridge (its state-dict keys differ)."""
    if any(type(m).__module__.startswith("transformer_lens") for m in hf.modules()):
        raise MiMassiveError("save the plain HF model, not a bridged one (bridging rewrites the module tree); "
                             "keep the HF model you trained, or load the variant again")


def save_variant(model: nn.Module, path: str | Path, *, spec: VariantSpec, tokenizer: Any,
                 base: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the variant to directory ``path``; returns the path of ``mi_massive_variant.json``.

    ``spec`` records how the model was built (TVR parameters included, for the record); ``base`` the
    model it started from (e.g. ``toy-gpt2`` or ``smollm2-135m``); ``extra`` anything else (training
    config, final loss, ...). The structure actually present in the model is checked against ``spec``.
    """
    from safetensors.torch import save_model

    hf = unwrap_hf(model)
    _check_plain(hf)
    found = detect_structure(hf)
    wanted = {"kv_bias": spec.kv_bias, "dyt": spec.dyt, "register": spec.register}
    if found != wanted:
        raise MiMassiveError(f"the model's structure {found} does not match the variant spec {wanted}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS
    tmp = out / (WEIGHTS + ".tmp")
    save_model(hf, str(tmp))
    tmp.replace(weights)
    attn_impl = hf.config._attn_implementation
    hf.config._attn_implementation = "eager"  # the custom attention is re-registered on load
    try:
        hf.config.save_pretrained(out)
    finally:
        hf.config._attn_implementation = attn_impl
    tokenizer.save_pretrained(out)
    first = next(hf.parameters())
    meta = {
        "format_version": FORMAT_VERSION, "variant": spec.to_dict(), "structure": found,
        "architecture": type(hf).__name__, "model_type": hf.config.model_type, "base": base,
        "dtype": str(first.dtype).replace("torch.", ""), "weights": WEIGHTS, "sha256": _sha256(weights),
        "n_parameters": sum(p.numel() for p in hf.parameters()), "extra": extra or {},
    }
    return write_json(out / VARIANT_CONFIG, meta)


def read_variant_meta(path: str | Path) -> dict[str, Any]:
    """The parsed ``mi_massive_variant.json`` of a saved variant."""
    meta_path = Path(path) / VARIANT_CONFIG
    if not meta_path.is_file():
        raise MiMassiveError(f"{path} is not a saved variant (no {VARIANT_CONFIG})")
    meta = read_json(meta_path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise MiMassiveError(f"{meta_path}: unsupported format_version {meta.get('format_version')}")
    return meta


def load_variant_hf(path: str | Path, *, dtype: torch.dtype = torch.float32):
    """(plain HF model in eval mode, tokenizer, metadata) of a saved variant."""
    from safetensors.torch import load_model as load_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    meta = read_variant_meta(folder)
    weights = folder / meta["weights"]
    if not weights.is_file():
        raise MiMassiveError(f"{folder}: weights file {meta['weights']} is missing")
    try:
        cfg = AutoConfig.from_pretrained(str(folder))
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:
        raise MiMassiveError(f"cannot read the config/tokenizer in {folder}: {str(err).splitlines()[0][:200]}") from err
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    spec = VariantSpec.from_dict(meta["variant"])
    apply_variant(hf, spec)
    try:
        missing, unexpected = load_weights(hf, str(weights), strict=True)
    except RuntimeError as err:
        raise MiMassiveError(f"{weights} does not match the variant's structure: {str(err).splitlines()[0][:200]}") from err
    hf = hf.to(dtype).eval()
    return hf, tok, meta


def load_variant(path: str | Path, *, dtype: str | torch.dtype = torch.float32):
    """A bridge (compatibility mode, raw weights, variant components) of a saved variant, with provenance."""
    from mi_massive.core.loading.bridge import attach_info, describe

    folder = Path(path)
    hf, tok, meta = load_variant_hf(folder, dtype=parse_dtype(dtype))
    name = f"{meta.get('base') or meta['model_type']}+{meta['variant']['name']}"
    bridge = bridge_variant(hf, tok, name=name, copy_model=False)
    extra = {"variant": meta["variant"], "structure": meta["structure"], "base": meta.get("base"),
             "training": meta.get("extra", {})}
    return attach_info(bridge, describe(bridge, spec=str(path), source="variant", name=name,
                                        fingerprint=f"sha256:{meta['sha256']}", path=str(folder.resolve()),
                                        extra=json.loads(json.dumps(extra, default=str))))
