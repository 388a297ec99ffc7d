"""GGUF files: dequantise once through transformers, keep an fp32 safetensors copy in the cache.

Dequantising SmolLM2's GGUF and converting its tokenizer takes ~25 s; loading the cached copy
takes well under a second. The cache key is the GGUF's SHA-256, so an edited file is reconverted.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from mi_massive.errors import MiMassiveError
from mi_massive.core.loading.cache import cache_root, sha256_file

CONVERSION_VERSION = 1


def converted_gguf_dir(gguf_path: Path) -> tuple[Path, str]:
    """Return (directory with an HF checkpoint of ``gguf_path``, the GGUF's SHA-256), converting if needed."""
    if not gguf_path.is_file():
        raise MiMassiveError(f"GGUF file not found: {gguf_path}")
    digest = sha256_file(gguf_path)
    target = cache_root() / "gguf" / f"{digest[:24]}-v{CONVERSION_VERSION}"
    if (target / "mi_massive_source.json").exists():
        return target, digest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = str(gguf_path.parent), gguf_path.name
        try:
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        except Exception as err:  # gguf raises many types for a damaged file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MiMassiveError(f"cannot read GGUF file {gguf_path}: {first[:200]}") from err
        # the dequantised weights are plain fp32: drop the GGUF marker so they can be saved
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        source = {"gguf": str(gguf_path), "sha256": digest, "conversion_version": CONVERSION_VERSION}
        (tmp / "mi_massive_source.json").write_text(json.dumps(source, indent=2))
        try:
            tmp.rename(target)
        except OSError:  # a concurrent conversion finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, digest
