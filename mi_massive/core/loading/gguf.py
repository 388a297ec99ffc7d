"""GGUF files: dequantise once through transformers, keep an fp32 safetensors copy in the cache.

Dequantising SmolLM2's GGUF and converting its tokenizer takes ~25 s; loading the cached copy
takes well under a second. The cache key is the GGUF's SHA-256, so an edited file is reconverted.
Conversions run under a cache lock (two processes never convert at once), in a ``.convert-*`` temp
folder renamed into place when complete; a killed conversion's temp folder is removed by the next one.
The conversion records the size of every file it wrote; a cached copy whose files no longer have those
sizes (a truncated ``model.safetensors``) is converted again instead of being loaded.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from mi_massive.errors import MiMassiveError
from mi_massive.core.io import sha256_file
from mi_massive.core.loading.cache import cache_error, cache_lock, cache_root

CONVERSION_VERSION = 1
SOURCE = "mi_massive_source.json"


def _intact(target: Path) -> bool:
    """Whether a cached conversion is complete: its source record is readable and every recorded file has its size
    (records from before sizes were kept are trusted)."""
    try:
        source = json.loads((target / SOURCE).read_text())
    except (OSError, ValueError):
        return False
    sizes = source.get("files") if isinstance(source, dict) else None
    if not isinstance(sizes, dict):
        return isinstance(source, dict)
    for name, size in sizes.items():
        path = target / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def converted_gguf_dir(gguf_path: Path) -> tuple[Path, str]:
    """Return (directory with an HF checkpoint of ``gguf_path``, the GGUF's SHA-256), converting if needed."""
    if not gguf_path.is_file():
        raise MiMassiveError(f"GGUF file not found: {gguf_path}")
    digest = sha256_file(gguf_path)
    target = cache_root() / "gguf" / f"{digest[:24]}-v{CONVERSION_VERSION}"
    if (target / SOURCE).exists() and _intact(target):
        return target, digest
    with cache_lock("gguf"):
        if (target / SOURCE).exists() and _intact(target):  # converted by another process meanwhile
            return target, digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for stale in target.parent.glob(".convert-*"):  # we hold the lock: no live conversion owns them
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # damaged (a truncated file) or unfinished: convert again
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        except OSError as err:
            raise MiMassiveError(cache_error(target.parent, err)) from err
        try:
            _convert(gguf_path, digest, tmp)
            tmp.rename(target)
        except OSError as err:
            raise MiMassiveError(cache_error(target.parent, err)) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, digest


def _convert(gguf_path: Path, digest: str, tmp: Path) -> None:
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
    files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    source = {"gguf": str(gguf_path), "sha256": digest, "conversion_version": CONVERSION_VERSION, "files": files}
    (tmp / SOURCE).write_text(json.dumps(source, indent=2))
