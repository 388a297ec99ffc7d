"""Writing results: atomic files, JSON encoding of tensors/dataclasses, package versions, UTC time.

>>> import json, torch
>>> json.loads(to_json({"x": torch.tensor([1.5]), "y": float("inf")}))
{'x': [1.5], 'y': 'inf'}

Provenance records (which need the model loaders) are built by :mod:`mi_massive.core.provenance`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mi_massive.errors import MiMassiveError

PACKAGES = ("mi_massive", "torch", "transformers", "transformer-lens", "circuitsvis", "plotly", "numpy")


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype):
        return str(obj).replace("torch.", "")
    return obj


def to_json(obj: Any) -> str:
    """Deterministic JSON text (dataclasses, tensors and numpy values converted; non-finite floats as strings)."""
    return json.dumps(_jsonable(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename.

    A reader never sees a half-written file; an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be readable like any file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as JSON."""
    return atomic_write_text(path, to_json(obj))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise MiMassiveError(f"result file not found: {path}") from err
    except json.JSONDecodeError as err:
        raise MiMassiveError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err


def prepare_out_dir(out: str | Path) -> Path:
    """Create the output directory; refuse a path that is an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MiMassiveError(f"cannot create output directory {out}: {err.strerror}") from err
    return out


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
