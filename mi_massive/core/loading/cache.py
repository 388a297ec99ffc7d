"""Where converted models are kept between runs.

>>> cache_error(Path("/ro/cache"), PermissionError(13, "Permission denied"))
'cannot write the model cache /ro/cache: Permission denied; set $MI_MASSIVE_CACHE to a writable directory'

A cache directory that cannot be created or written is a one-line :class:`MiMassiveError` naming the
directory and the fix (``$MI_MASSIVE_CACHE``), raised where something has to be written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from mi_massive.errors import MiMassiveError

CACHE_ENV = "MI_MASSIVE_CACHE"
STALE_AFTER_S = 600.0  # a temp dir older than this was left by a killed writer (a conversion takes ~25 s)
_CLEANED: set[Path] = set()  # the cache roots this process has cleaned (once each)


def cache_root() -> Path:
    """The user cache dir: ``$MI_MASSIVE_CACHE``, else ``$XDG_CACHE_HOME/mi_massive``, else ``~/.cache/mi_massive``.

    Created on every call; its stale temp folders (:func:`clean_stale_cache`) are removed on the first call
    for that root in this process."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "mi_massive"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MiMassiveError(cache_error(root, err)) from err
    if root not in _CLEANED:
        clean_stale_cache(root)
        _CLEANED.add(root)
    return root


def cache_error(path: Path, err: OSError) -> str:
    """The one-line message for a cache directory that cannot be written."""
    return (f"cannot write the model cache {path}: {err.strerror or err}; set ${CACHE_ENV} to a writable "
            "directory")


def clean_stale_cache(root: Path, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temp folders a killed writer left in the cache (``gguf/.convert-*``, ``toy_tokenizer_v1.tmp*``)
    once they are older than ``older_than_s`` (a live writer's are younger); returns what was removed."""
    now = time.time()
    removed = []
    candidates = list(root.glob("*.tmp*")) + list((root / "gguf").glob(".convert-*"))
    for path in candidates:
        try:
            if path.is_dir() and now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock (``flock`` on ``<cache>/.NAME.lock``) while a cache entry is written, so two
    processes never convert the same model at once; the OS releases it if the process dies."""
    root = cache_root()
    path = root / f".{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise MiMassiveError(cache_error(root, err)) from err
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock here: go on without the lock
            pass
        yield
    finally:
        os.close(fd)


