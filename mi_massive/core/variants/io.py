"""Saving and loading variants: ``model.safetensors`` + HF ``config.json`` + tokenizer + ``mi_massive_variant.json``.

``mi_massive.load_model(path)`` recognises a directory holding ``mi_massive_variant.json`` and calls
:func:`load_variant`, which rebuilds the HF model from ``config.json``, re-applies the variant's
structure (KV bias, DyT, register), loads the weights (strict: every key must match) and bridges it with
the matching components. A save -> load round trip is bit-identical.

Loading trusts nothing in the directory: the weights file named by the metadata must lie inside the
directory (``weights: /etc/passwd`` or ``../x`` is refused) and must have the SHA-256 recorded at save time
(a truncated or edited file is a one-line error, never a half-loaded model).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mi_massive.errors import MiMassiveError
from mi_massive.core.loading.specs import VARIANT_CONFIG, parse_dtype
from mi_massive.core.io import read_json, sha256_file, write_json
from mi_massive.core.variants.build import apply_variant, bridge_variant, detect_structure, unwrap_hf
from mi_massive.core.variants.spec import VariantSpec

WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1


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
    from mi_massive.core.io import OutputError

    out = Path(path)
    weights = out / WEIGHTS
    tmp = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS}.", suffix=".tmp", dir=out)  # cleaned after a kill
        os.close(fd)
        save_model(hf, tmp)
        os.replace(tmp, weights)
    except OSError as err:
        raise OutputError(f"cannot write {weights}: {err.strerror or err}", err.errno) from err
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
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
        "dtype": str(first.dtype).replace("torch.", ""), "weights": WEIGHTS, "sha256": sha256_file(weights),
        "bytes": weights.stat().st_size,
        "n_parameters": sum(p.numel() for p in hf.parameters()), "extra": extra or {},
    }
    return write_json(out / VARIANT_CONFIG, meta)


def read_variant_meta(path: str | Path) -> dict[str, Any]:
    """The parsed ``mi_massive_variant.json`` of a saved variant."""
    meta_path = Path(path) / VARIANT_CONFIG
    if not meta_path.is_file():
        raise MiMassiveError(f"{path} is not a saved variant (no {VARIANT_CONFIG})")
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise MiMassiveError(f"{meta_path} is not a variant record (a JSON object)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise MiMassiveError(f"{meta_path}: unsupported format_version {meta.get('format_version')}")
    for key, kind in (("variant", dict), ("structure", dict), ("weights", str), ("sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise MiMassiveError(f"{meta_path}: field '{key}' is missing or not a {kind.__name__}")
    return meta


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checked_weights(folder: str | Path, meta: dict[str, Any]) -> Path:
    """The weights file of a saved variant, after checking that it lies inside ``folder`` and has the size
    and SHA-256 recorded when it was saved (one-line :class:`MiMassiveError` otherwise).

    >>> checked_weights("/tmp", {"weights": "/etc/passwd", "sha256": "0" * 64})
    Traceback (most recent call last):
    ...
    mi_massive.errors.MiMassiveError: /tmp: the weights file '/etc/passwd' is outside the variant directory; refusing to read it
    """
    folder = Path(folder)
    name = meta.get("weights")
    if not isinstance(name, str) or not name.strip():
        raise MiMassiveError(f"{folder}: the variant record names no weights file")
    root = folder.resolve()
    weights = folder / name
    try:
        inside = not Path(name).is_absolute() and weights.resolve().is_relative_to(root) and weights.resolve() != root
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise MiMassiveError(f"{folder}: the weights file '{name}' is outside the variant directory; refusing to read it")
    if not weights.is_file():
        raise MiMassiveError(f"{folder}: weights file {name} is missing")
    recorded = str(meta.get("sha256", "")).lower()
    if not _SHA256.match(recorded):
        raise MiMassiveError(f"{folder}: the variant record has no valid SHA-256 of its weights")
    size = weights.stat().st_size
    if isinstance(meta.get("bytes"), int) and size != meta["bytes"]:
        raise MiMassiveError(f"{weights} has {size:,} bytes, {meta['bytes']:,} were saved (truncated or replaced); "
                             "re-save or retrain the variant")
    if sha256_file(weights) != recorded:
        raise MiMassiveError(f"{weights} does not match the SHA-256 recorded when it was saved (truncated or "
                             "modified); re-save or retrain the variant")
    return weights


def load_variant_hf(path: str | Path, *, dtype: torch.dtype = torch.float32):
    """(plain HF model in eval mode, tokenizer, metadata) of a saved variant."""
    from safetensors.torch import load_model as load_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    meta = read_variant_meta(folder)
    weights = checked_weights(folder, meta)
    try:
        cfg = AutoConfig.from_pretrained(str(folder))
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:
        raise MiMassiveError(f"cannot read the config/tokenizer in {folder}: {str(err).splitlines()[0][:200]}") from err
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    try:
        spec = VariantSpec.from_dict(meta["variant"])
    except (TypeError, ValueError) as err:
        raise MiMassiveError(f"{folder}: unreadable variant spec in {VARIANT_CONFIG}: {err}") from err
    apply_variant(hf, spec)
    try:
        missing, unexpected = load_weights(hf, str(weights), strict=True)
    except Exception as err:  # RuntimeError for a key mismatch; SafetensorError for a damaged file
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
