"""Where converted models are kept between runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "MI_MASSIVE_CACHE"


def cache_root() -> Path:
    """The user cache dir: ``$MI_MASSIVE_CACHE``, else ``$XDG_CACHE_HOME/mi_massive``, else ``~/.cache/mi_massive``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "mi_massive"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (about 0.2 s for the 98 MB SmolLM2 GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
