"""Writing results: atomic files, JSON encoding of tensors/dataclasses, package versions, UTC time, and the
output-directory guard of CLI runs (a lock, stale temp files cleaned, one manifest naming each file's run).

>>> import json, torch
>>> json.loads(to_json({"x": torch.tensor([1.5]), "y": float("inf")}))
{'x': [1.5], 'y': 'inf'}

A write that fails (disk full, read-only directory) raises :class:`OutputError`: a one-line
:class:`~mi_massive.errors.MiMassiveError` that is also an :class:`OSError` (same ``errno``), and the
half-written temp file is removed. Provenance records (which need the model loaders) are built by
:mod:`mi_massive.core.provenance`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno as _errno
import functools
import hashlib
import json
import math
import os
import platform
import re
import tempfile
import threading
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mi_massive.errors import MiMassiveError

PACKAGES = ("mi_massive", "torch", "transformers", "transformer-lens", "circuitsvis", "plotly", "numpy")
MANIFEST = "mi_massive_manifest.json"
MANIFEST_FORMAT = 1
MANIFEST_EVERY_S = 2.0  # while a run writes, its manifest is rewritten at most this often (the first write at once)
# the temp names this package writes: atomic_write_bytes' ``.NAME.XXXXXXXX.tmp`` and the variant weights' legacy name
STALE_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^model\.safetensors\.tmp$")
# errors of the environment, not of the program: reported as one line, never as a traceback
ENVIRONMENT_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS, _errno.EACCES, _errno.EPERM,
                                _errno.EISDIR, _errno.ENOTDIR, _errno.EFBIG, _errno.ENAMETOOLONG, _errno.EIO,
                                _errno.EMFILE, _errno.ENFILE})


class OutputError(MiMassiveError, OSError):
    """A result could not be written (``cannot write PATH: No space left on device``).

    >>> err = OutputError("cannot write x.json: No space left on device", _errno.ENOSPC)
    >>> isinstance(err, OSError), err.errno == _errno.ENOSPC, str(err)
    (True, True, 'cannot write x.json: No space left on device')
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        OSError.__init__(self, code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def os_error_text(err: OSError) -> str:
    """``strerror: filename`` of an OSError, on one line (``No space left on device: /out/scan.json``)."""
    if isinstance(err, OutputError):
        return str(err)
    what = err.strerror or str(err) or type(err).__name__
    name = err.filename if err.filename is not None else None
    return f"{what}: {name}" if name else what


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


def _write_replace(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, atomic rename; the temp file is removed on any failure."""
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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename.

    A reader never sees a half-written file; an interrupted write leaves the old file intact (its temp file
    ``.NAME.XXXXXXXX.tmp`` is removed, or cleaned by the next CLI run in that directory after a kill).
    Raises :class:`OutputError` (one line, also an ``OSError``) when the folder cannot be made or written.
    """
    if isinstance(path, str) and not path.strip():
        raise OutputError("cannot write to an empty path", _errno.ENOENT)
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory", _errno.EISDIR)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_replace(path, data)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}", err.errno) from err
    for run in list(_ACTIVE_RUNS):
        run.note_written(path, data)
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
    except IsADirectoryError as err:
        raise MiMassiveError(f"{path} is a directory, not a result file") from err
    except UnicodeDecodeError as err:
        raise MiMassiveError(f"{path} is not UTF-8 JSON") from err
    except json.JSONDecodeError as err:
        raise MiMassiveError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err


def prepare_out_dir(out: str | Path) -> Path:
    """Create the output directory; refuse an empty path and a path that is an existing file."""
    if isinstance(out, str) and not out.strip():
        raise MiMassiveError("the output directory is empty ('') -- give a directory")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MiMassiveError(f"cannot create output directory {out}: {err.strerror}") from err
    return out


def check_writable(folder: str | Path, what: str = "directory") -> None:
    """Raise a one-line error unless a file can be created in ``folder`` (a real probe: root ignores modes)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".mi_massive-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{what} {folder} is not writable: {err.strerror or err}", err.errno) from err


def clean_stale_temp(folder: str | Path, *, depth: int = 3) -> list[Path]:
    """Remove the temp files a killed writer of this package left under ``folder`` (``.NAME.XXXXXXXX.tmp``,
    ``model.safetensors.tmp``), down to ``depth`` folder levels; returns what was removed.

    Only safe while no other writer works there: CLI runs call it holding the directory's lock.
    """
    removed: list[Path] = []
    root = Path(folder)

    def visit(d: Path, level: int) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if level < depth:
                        visit(Path(entry.path), level + 1)
                elif STALE_TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue

    visit(root, 0)
    return removed


# ---------------------------------------------------------------------------- output directory of a run
_ACTIVE_RUNS: list["OutRun"] = []


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks (about 0.2 s for the 98 MB SmolLM2 GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    """The parsed ``mi_massive_manifest.json`` of an output directory (None when there is none or it is unreadable).

    Keys: ``status`` (``running`` while a run works -- or was killed --, ``complete``, ``failed``,
    ``incomplete``, ``interrupted``), ``run`` (the id of the latest run), ``command``, ``options``,
    ``started_utc`` / ``finished_utc``, ``runs`` ({id: command, times, status} of every run that still owns a
    file) and ``files`` ({relative path: {"run": id or None, "bytes": n, "sha256": hex}}).
    """
    try:
        data = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def check_out_dir(out: str | Path, *, hashes: bool = True) -> list[str]:
    """What makes an output directory's results inconsistent as a whole; ``[]`` when its last run completed
    and every file it lists is there with the recorded size (and SHA-256 with ``hashes``).

    >>> import tempfile
    >>> check_out_dir(tempfile.mkdtemp())
    ['no mi_massive_manifest.json (not written by an mi-massive command, or by an older version)']
    """
    folder = Path(out)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"no {MANIFEST} (not written by an mi-massive command, or by an older version)"]
    problems = []
    if manifest.get("status") != "complete":
        problems.append(f"the last run ({manifest.get('command')}, {manifest.get('run')}) is "
                        f"{manifest.get('status')}: its outputs may be mixed with an earlier run's")
    for rel, entry in sorted(manifest.get("files", {}).items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: listed but missing")
        elif path.stat().st_size != entry.get("bytes"):
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {entry.get('bytes')}")
        elif hashes and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel}: content differs from the manifest (changed after the run)")
    return problems


class OutRun:
    """One CLI run's hold on its ``--out`` directory: an exclusive lock (``flock`` on the directory, released
    by the OS when the process dies), stale temp files cleaned, and the manifest.

    Used through :func:`out_dir_run`. Every :func:`atomic_write_bytes` under ``out`` while the run is active is
    recorded with its size and SHA-256; at the end, files written by other writers (safetensors, tokenizers)
    are found by modification time. The manifest is written at the start with status ``running``, again
    at the run's first write and then at most every :data:`MANIFEST_EVERY_S` seconds (on a write), and at
    the end with every file and the final status: a killed run's manifest says ``running``, never
    ``complete``. The next run drops the entries a killed run may have left stale (a file modified since it
    started whose SHA-256 no longer matches). A failed run that wrote nothing leaves the directory as it
    found it (a directory it created is removed).
    """

    def __init__(self, out: Path, command: str, options: dict[str, Any] | None = None) -> None:
        self.out = out
        self.command = command
        self.options = _jsonable(options or {})
        self.run_id = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.created: list[Path] = []
        self.fd: int | None = None
        self.previous: dict[str, Any] | None = None
        self.previous_bytes: bytes | None = None
        self.written: dict[str, dict[str, Any]] = {}
        self.started_utc = utc_now()
        self.start_ns = 0
        self.removed_temp: list[Path] = []
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._saved_at: float | None = None  # time.monotonic() after the last rewrite on a write

    # ------------------------------------------------------------------ start
    def start(self) -> "OutRun":
        out = self.out
        missing = []
        probe = out
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create output directory {out}: {err.strerror or err}", err.errno) from err
        self.created = missing  # deepest first
        try:
            self._lock_dir()
            check_writable(out, "--out")
            self._root = out.resolve()
            self.removed_temp = clean_stale_temp(out)
            manifest_path = out / MANIFEST
            if manifest_path.is_file():
                self.previous_bytes = manifest_path.read_bytes()
                self.previous = read_manifest(out)
                self._drop_stale_entries()
            self.start_ns = time.time_ns()
            self._save("running", files=self._carried_files())
        except BaseException:
            self._release()
            self._remove_created()
            raise
        _ACTIVE_RUNS.append(self)
        return self

    def _lock_dir(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run without the lock
            return
        self.fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self.fd)
            self.fd = None
            if err.errno not in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                return  # a file system without flock: run without the lock
            other = read_manifest(self.out) or {}
            who = f"{other.get('command', 'mi-massive')}, pid {other.get('pid', '?')}"
            raise MiMassiveError(f"--out {self.out} is in use by another run ({who}); wait for it to finish "
                                 "or choose another directory") from None

    # ------------------------------------------------------------------ bookkeeping
    def _relative(self, path: Path) -> str | None:
        if self._root is None:
            return None
        try:
            rel = path.resolve().relative_to(self._root)
        except (ValueError, OSError):
            return None
        return None if str(rel) in (".", MANIFEST) else rel.as_posix()

    def note_written(self, path: Path, data: bytes) -> None:
        """Record a finished atomic write under ``out``; rewrite the manifest (still ``running``) when this is
        the run's first write or the last rewrite is :data:`MANIFEST_EVERY_S` seconds old."""
        rel = self._relative(Path(path))
        if rel is None:
            return
        with self._lock:
            self.written[rel] = {"run": self.run_id, "bytes": len(data), "sha256": _sha256_bytes(data)}
            if self._saved_at is not None and time.monotonic() - self._saved_at < MANIFEST_EVERY_S:
                return
            self._save("running", files={**self._carried_files(), **self.written})
            self._saved_at = time.monotonic()

    def _drop_stale_entries(self) -> None:
        """After a killed run (status ``running``), drop the previous manifest's entries of files modified since
        that run started whose SHA-256 differs: it may have rewritten them after its last manifest."""
        previous = self.previous or {}
        files = previous.get("files")
        if previous.get("status") != "running" or not isinstance(files, dict):
            return
        try:
            since = _dt.datetime.fromisoformat(previous["started_utc"]).timestamp()
        except (KeyError, TypeError, ValueError):
            since = 0.0  # unknown start: check every entry
        for rel, entry in list(files.items()):
            path = self.out / rel
            if not (isinstance(entry, dict) and entry.get("sha256")):
                continue  # an unclaimed file: nothing recorded to go stale
            try:
                if path.stat().st_mtime >= since and sha256_file(path) != entry["sha256"]:
                    del files[rel]
            except OSError:
                continue  # gone: not carried anyway

    def _carried_files(self) -> dict[str, dict[str, Any]]:
        """Entries of the previous manifest whose files are still there with the recorded size."""
        files = {}
        for rel, entry in ((self.previous or {}).get("files") or {}).items():
            path = self.out / rel
            if isinstance(entry, dict) and path.is_file() and path.stat().st_size == entry.get("bytes"):
                files[rel] = entry
        return files

    def _scan(self, limit: int = 20000) -> dict[str, dict[str, Any]]:
        """Every file now under ``out`` (depth <= 6): this run's writes, earlier runs' files, unknown files."""
        carried = self._carried_files()
        files: dict[str, dict[str, Any]] = {}
        count = 0
        for dirpath, dirnames, filenames in os.walk(self.out):
            depth = len(Path(dirpath).relative_to(self.out).parts)
            if depth >= 6:
                dirnames[:] = []
            for name in filenames:
                count += 1
                if count > limit:
                    return {**carried, **files, **self.written}
                path = Path(dirpath) / name
                rel = path.relative_to(self.out).as_posix()
                if rel == MANIFEST or STALE_TEMP.match(name):
                    continue
                if rel in self.written:
                    files[rel] = self.written[rel]
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                if st.st_mtime_ns >= self.start_ns:
                    files[rel] = {"run": self.run_id, "bytes": st.st_size, "sha256": sha256_file(path)}
                elif rel in carried:
                    files[rel] = carried[rel]
                else:
                    files[rel] = {"run": None, "bytes": st.st_size, "sha256": None}
        return files

    def _save(self, status: str, *, files: dict[str, dict[str, Any]], finished: bool = False) -> None:
        runs = {}
        previous_runs = (self.previous or {}).get("runs") or {}
        for entry in files.values():
            rid = entry.get("run")
            if rid and rid != self.run_id and rid in previous_runs:
                runs[rid] = previous_runs[rid]
        runs[self.run_id] = {"command": self.command, "started_utc": self.started_utc,
                             "finished_utc": utc_now() if finished else None, "status": status}
        manifest = {"format": MANIFEST_FORMAT, "status": status, "run": self.run_id, "command": self.command,
                    "options": self.options, "pid": os.getpid(), "host": platform.node(),
                    "started_utc": self.started_utc, "finished_utc": runs[self.run_id]["finished_utc"],
                    "runs": runs, "files": dict(sorted(files.items()))}
        path = self.out / MANIFEST
        try:
            _write_replace(path, to_json(manifest).encode("utf-8"))
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}", err.errno) from err

    # ------------------------------------------------------------------ end
    def earlier_files(self) -> list[str]:
        """Files under ``out`` that this run did not write (left by earlier runs), as recorded at the end."""
        return sorted(rel for rel, e in (self._final or {}).items() if e.get("run") != self.run_id)

    _final: dict[str, dict[str, Any]] | None = None

    def finish(self, status: str) -> None:
        """End the run: ``complete``, ``failed``, ``incomplete`` or ``interrupted``. A run that is not complete
        and wrote nothing restores the previous manifest (or removes the directory it created)."""
        if self in _ACTIVE_RUNS:
            _ACTIVE_RUNS.remove(self)
        try:
            files = self._scan()
            mine = [rel for rel, e in files.items() if e.get("run") == self.run_id]
            if status != "complete" and not mine:
                self._restore()
            else:
                self._final = files
                self._save(status, files=files, finished=True)
        except (OSError, MiMassiveError):
            if status == "complete":
                raise  # the results are there but the manifest is not: say so
            # a failing run keeps its own error; its manifest says 'running', which is not complete either
        finally:
            self._release()

    def _restore(self) -> None:
        path = self.out / MANIFEST
        with contextlib.suppress(OSError):
            if self.previous_bytes is not None:
                _write_replace(path, self.previous_bytes)
            else:
                path.unlink(missing_ok=True)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:  # deepest first; only folders this run made, and only when empty
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


@contextlib.contextmanager
def out_dir_run(out: str | Path, command: str, options: dict[str, Any] | None = None) -> Iterator[OutRun]:
    """Hold ``out`` for one run (see :class:`OutRun`); the status is ``complete`` when the block ends normally.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "run"
    >>> with out_dir_run(folder, "demo") as run:
    ...     _ = write_json(folder / "result.json", {"x": 1})
    >>> m = read_manifest(folder)
    >>> m["status"], m["files"]["result.json"]["run"] == m["run"], check_out_dir(folder)
    ('complete', True, [])
    """
    run = OutRun(Path(out), command, options).start()
    try:
        yield run
    except KeyboardInterrupt:
        run.finish("interrupted")
        raise
    except BaseException:
        run.finish("failed")
        raise
    run.finish("complete")


def package_versions() -> dict[str, str]:
    """Python's and the key packages' versions (provenance); read once per process (the installed metadata is parsed)."""
    return dict(_package_versions())


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
