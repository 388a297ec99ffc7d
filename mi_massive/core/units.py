"""Units of work run on Ray (or in this process), each result written atomically as it finishes; reruns resume.

>>> import tempfile
>>> from mi_massive.core.units import Unit, UnitStore, run_units
>>> store = UnitStore(tempfile.mkdtemp())
>>> units = [Unit("a", "mi_massive.core.units:echo", {"text": "1"}),
...          Unit("b", "mi_massive.core.units:echo", {"text": "2"}, needs=("a",))]
>>> report = run_units(units, store, engine="local", progress=False)
>>> report.computed, store.text("b")
(['a', 'b'], '2 (after a)')
>>> run_units(units, store, engine="local", progress=False).reused   # a rerun recomputes nothing
['a', 'b']

A :class:`Unit` names a module-level function (``"package.module:function"``, imported by the worker, so
nothing is pickled from a file), its keyword arguments (plain JSON data) and the units it ``needs``:
their results (JSON text) reach the function as ``needs={id: text}``. The function returns its result as
JSON text. ``engine``:

- ``"ray"``: every unit is one Ray task with the unit's declared resources (``num_cpus``, ``num_gpus``);
  Ray schedules them and passes results between dependent units (an embedded local Ray starts unless
  ``ray_address`` names a cluster: ``auto`` or ``HOST:PORT``). Tasks are retried once after a worker
  crash (``max_retries=1``); a cancelled task (``ray.cancel``) or an error is not retried.
- ``"local"``: the same functions, one after another, in this process (when Ray is not installed).
- ``"auto"``: Ray when it is installed, else local (and says so).

Results are written by the driver (:class:`UnitStore`), so workers on other machines need no shared
disk: ``<root>/<id>.json`` atomically, then ``<root>/<id>.unit.json`` with the unit's key (a hash of its
function and arguments) and the result's sha256. A unit counts as done only when both agree; a failed
unit writes ``<id>.error.json`` with its reason and the others go on. Rerunning the same units
recomputes only those not done (a changed argument changes the key: that unit is recomputed).
Each function runs with ``torch.set_num_threads(threads)`` (default: the unit's ``num_cpus``) in both
engines, so Ray and local runs give the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mi_massive.core.io import atomic_write_text, read_json, sha256_file, to_json, utc_now
from mi_massive.errors import MiMassiveError

ENGINES = ("auto", "ray", "local")


class NotApplicable(MiMassiveError):
    """Raised by a unit function when its analysis does not apply (e.g. nothing massive to attribute): the unit
    is finished -- stored as ``{"not_applicable": reason}`` and not rerun -- rather than failed."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``id`` (a relative path such as ``smollm2-135m/scan``), ``fn`` (``module:function``),
    ``kwargs`` (JSON data), ``needs`` (ids whose results it reads), resources ``num_cpus`` / ``num_gpus``, and
    ``group`` (e.g. the model: with ``share_groups`` the group's units run one after another in one Ray actor,
    which keeps the model it loaded; the result, and so the key, does not depend on it)."""

    id: str
    fn: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    group: str | None = None  # units that may share one worker (and its loaded model) with share_groups=True

    @property
    def key(self) -> str:
        """Hash of the function and its arguments (what makes a stored result valid for this unit)."""
        blob = json.dumps({"fn": self.fn, "kwargs": self.kwargs, "needs": list(self.needs)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _check_id(unit_id: str) -> None:
    parts = unit_id.split("/")
    if not unit_id or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\\" in unit_id:
        raise MiMassiveError(f"bad unit id '{unit_id}'")


class UnitStore:
    """Where unit results live: ``<root>/<id>.json`` (the result), ``<id>.unit.json`` (key + sha256),
    ``<id>.error.json`` (the reason of the last failure)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, unit_id: str, suffix: str = ".json") -> Path:
        _check_id(unit_id)
        return self.root / f"{unit_id}{suffix}"

    def done(self, unit: Unit) -> bool:
        """True when a complete result of this very unit (same key, intact file) is stored."""
        meta, result = self.path(unit.id, ".unit.json"), self.path(unit.id)
        if not (meta.is_file() and result.is_file()):
            return False
        try:
            info = read_json(meta)
        except MiMassiveError:
            return False
        return isinstance(info, dict) and info.get("key") == unit.key and info.get("sha256") == sha256_file(result)

    def cost(self, unit_id: str) -> dict[str, float]:
        """What the stored result cost (seconds, memory; see :func:`execute`), {} if unknown."""
        try:
            return dict(read_json(self.path(unit_id, ".unit.json")).get("cost") or {})
        except (MiMassiveError, AttributeError):
            return {}

    def text(self, unit_id: str) -> str:
        return self.path(unit_id).read_text(encoding="utf-8")

    def put(self, unit: Unit, text: str, cost: Mapping[str, float] | None = None) -> None:
        """Write the result, then the marker that makes it count (both atomic; the marker also keeps what the
        unit cost, see :func:`execute`); clears an old error."""
        atomic_write_text(self.path(unit.id), text)
        atomic_write_text(self.path(unit.id, ".unit.json"), to_json(
            {"id": unit.id, "key": unit.key, "fn": unit.fn, "sha256": hashlib.sha256(text.encode()).hexdigest(),
             "cost": dict(cost or {}), "finished_utc": utc_now()}))
        self.path(unit.id, ".error.json").unlink(missing_ok=True)

    def fail(self, unit: Unit, reason: str) -> None:
        atomic_write_text(self.path(unit.id, ".error.json"),
                          to_json({"id": unit.id, "key": unit.key, "reason": reason, "at": utc_now()}))

    def error(self, unit_id: str) -> str | None:
        p = self.path(unit_id, ".error.json")
        try:
            return read_json(p).get("reason") if p.is_file() else None
        except (MiMassiveError, AttributeError):
            return None


@dataclass
class UnitsReport:
    """What one :func:`run_units` call did: ``computed`` / ``reused`` ids (in unit order), ``failed``
    {id: one-line reason}, the ``engine`` that ran them, and ``seconds`` (wall time)."""

    engine: str
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def resolve_function(spec: str) -> Callable[..., str]:
    """``"package.module:function"`` -> the function (only inside ``mi_massive`` or an importable module)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise MiMassiveError(f"bad unit function '{spec}' (want module:function)")
    return getattr(importlib.import_module(module), name)


def execute(fn: str, kwargs: Mapping[str, Any], need_ids: Sequence[str], threads: int | None,
            *need_texts: str) -> tuple[str, dict[str, float]]:
    """Run one unit's function (in a Ray worker or here) with ``threads`` torch threads; returns its JSON text
    and what it cost: ``seconds`` (wall), ``peak_rss_mib`` (the process' peak resident memory so far: a
    reused worker's includes earlier units) and ``cuda_peak_mib`` (peak CUDA memory of this unit, 0 without)."""
    import resource

    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        text = resolve_function(fn)(needs=dict(zip(need_ids, need_texts)), **kwargs)
    finally:
        torch.set_num_threads(before)
    return text, {"seconds": round(time.perf_counter() - start, 3),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else 0.0}


def echo(text: str, needs: Mapping[str, str]) -> str:
    """A trivial unit function (docs and tests): ``text``, noting the units it read."""
    return text + (f" (after {', '.join(needs)})" if needs else "")


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _root_cause(err: BaseException) -> BaseException:
    """The original exception behind a Ray error (Ray wraps it and keeps it as ``cause``)."""
    while (cause := getattr(err, "cause", None)) is not None and cause is not err:
        err = cause
    return err


def _reason(err: BaseException) -> str:
    """One line saying why a unit failed (a Ray error unwrapped to its cause)."""
    err = _root_cause(err)
    kind = type(err).__name__
    text = str(err).strip().splitlines()
    if kind == "TaskCancelledError":
        return "killed: the task was cancelled (ray.cancel)"
    if kind in ("WorkerCrashedError", "NodeDiedError", "ActorDiedError"):
        return f"killed: {kind} (the worker process died; retried once)"
    if kind == "OutOfMemoryError":
        return f"out of memory: {text[0] if text else kind}"
    if kind == "MiMassiveError":
        return text[0] if text else kind
    return f"{kind}: {text[-1] if text else ''}".rstrip(": ")


def _bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="unit", disable=not progress, dynamic_ncols=True)


def run_units(units: Sequence[Unit], store: UnitStore, *, engine: str = "auto", ray_address: str | None = None,
              threads: int | None = None, progress: bool = True, desc: str = "units",
              on_poll: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] | None = None,
              share_groups: bool = False) -> UnitsReport:
    """Run every unit not already done in ``store`` (see the module doc); returns a :class:`UnitsReport`.

    ``units`` must list a unit after the units it needs. ``threads``: torch threads per unit (default:
    its ``num_cpus``). ``on_poll(running)`` is called while Ray runs, with {id: ObjectRef} of the units
    submitted and not finished (for monitoring, or a test that kills one). ``log``: where one-line notes go.
    ``share_groups`` (Ray): one actor per unit ``group`` runs that group's units in order and keeps the model it
    loaded (a model is loaded once instead of once per unit; an actor that dies fails its remaining units,
    which a rerun resumes). Locally the engine always reuses the last loaded model.
    """
    if engine not in ENGINES:
        raise MiMassiveError(f"unknown engine '{engine}'; use {', '.join(ENGINES)}")
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        raise MiMassiveError("duplicate unit ids")
    seen: set[str] = set()
    for u in units:
        _check_id(u.id)
        if missing := [n for n in u.needs if n not in seen]:
            raise MiMassiveError(f"unit {u.id} needs {missing[0]}, which is not listed before it")
        seen.add(u.id)
    if engine == "auto":
        engine = "ray" if ray_available() else "local"
        if engine == "local" and log:
            log("note: Ray is not installed (pip install 'mi_massive[ray]'): running the units here, one after another")
    elif engine == "ray" and not ray_available():
        raise MiMassiveError("Ray is not installed: pip install 'mi_massive[ray]' (or use the local engine)")
    report = UnitsReport(engine=engine)
    start = time.perf_counter()
    todo = []
    for u in units:
        if store.done(u):
            report.reused.append(u.id)
        else:
            todo.append(u)
    if todo:
        runner = _run_ray if engine == "ray" else _run_local
        runner(todo, store, report, threads=threads, progress=progress, desc=desc,
               ray_address=ray_address, on_poll=on_poll, share_groups=share_groups)
    order = {u.id: i for i, u in enumerate(units)}
    report.computed.sort(key=order.__getitem__)
    report.failed = dict(sorted(report.failed.items(), key=lambda kv: order[kv[0]]))
    report.seconds = time.perf_counter() - start
    return report


def not_applicable_reason(result: Any) -> str | None:
    """The reason stored by a unit that did not apply (``result``: its parsed JSON); None for a real result."""
    return result.get("not_applicable") if isinstance(result, dict) and len(result) == 1 else None


def _blocked_by(unit: Unit, report: UnitsReport) -> str | None:
    bad = [n for n in unit.needs if n in report.failed]
    return f"not run: needs {bad[0]}, which failed" if bad else None


def _fail(unit: Unit, store: UnitStore, report: UnitsReport, reason: str) -> None:
    report.failed[unit.id] = reason
    store.fail(unit, reason)


def _settle(unit: Unit, store: UnitStore, report: UnitsReport, text: str | None = None,
            cost: Mapping[str, float] | None = None, err: BaseException | None = None) -> None:
    """Record how one unit ended (both engines): its result; ``{"not_applicable": reason}`` when it raised
    :class:`NotApplicable`; else a failure with its one-line reason."""
    if err is not None:
        cause = _root_cause(err)
        if not isinstance(cause, NotApplicable):
            _fail(unit, store, report, _blocked_by(unit, report) or _reason(err))
            return
        text, cost = to_json({"not_applicable": str(cause).strip().splitlines()[0]}), None
    store.put(unit, text, cost)
    report.computed.append(unit.id)


def _run_local(todo, store, report, *, threads, progress, desc, **_):
    bar = _bar(len(todo), progress, desc)
    with bar:
        for u in todo:
            if (blocked := _blocked_by(u, report)) is not None:
                _fail(u, store, report, blocked)
            else:
                try:
                    text, cost = execute(u.fn, u.kwargs, list(u.needs), threads or int(u.num_cpus),
                                         *[store.text(n) for n in u.needs])
                except Exception as err:  # as on Ray: a failed unit is reported with its reason; the rest go on
                    _settle(u, store, report, err=err)
                else:
                    _settle(u, store, report, text, cost)
            bar.set_postfix_str(_status(len(report.computed), 0, len(report.failed)))
            bar.update(1)


def _status(done: int, running: int, failed: int) -> str:
    return f"done {done}, running/queued {running}, failed {failed}"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when ``HOST:PORT`` does not answer: Ray itself retries for minutes."""
    import socket

    if address == "auto" or address.startswith("ray://") or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as err:
        raise _unreachable(address, getattr(err, "strerror", None) or err) from None


def _unreachable(address: str, why: Any) -> MiMassiveError:
    text = str(why).strip()
    return MiMassiveError(f"cannot reach the Ray cluster at '{address}': "
                          f"{text.splitlines()[0] if text else type(why).__name__}")


_LAST_MODEL: dict[str, Any] = {}  # the model this process loaded last, reused by the next unit (local engine)


def unit_model(model: str, dtype: str, device: str | None):
    """The model a unit runs on: loaded from its spec, sharded over every visible GPU when the unit was given
    several (Ray sets ``CUDA_VISIBLE_DEVICES`` to a task's GPUs) and ``device`` is None or ``"cuda"``.

    >>> a = unit_model("toy-llama", "float32", "cpu")
    >>> a is unit_model("toy-llama", "float32", "cpu"), a is unit_model("toy-gpt2", "float32", "cpu")
    (True, False)

    The last model loaded is kept and reused by the next unit with the same (spec, dtype, device): units of
    one model run one after the other in the local engine or a ``--share-models`` actor load it once. Ray
    tasks set ``$MI_MASSIVE_KEEP_MODEL=0``: a pooled worker does not hold a model between tasks.
    """
    import torch

    from mi_massive.core.loading import load_model

    key = f"{model}|{dtype}|{device}"
    if _LAST_MODEL.get("key") == key:
        return _LAST_MODEL["model"]
    _LAST_MODEL.clear()
    n_gpus = torch.cuda.device_count() if device in (None, "cuda") and torch.cuda.is_available() else 0
    bridge = (load_model(model, dtype=dtype, n_devices=n_gpus) if n_gpus > 1  # a device and n_devices exclude each other
              else load_model(model, dtype=dtype, device=device))
    if os.environ.get("MI_MASSIVE_KEEP_MODEL", "1") != "0":
        _LAST_MODEL.update(key=key, model=bridge)
    return bridge


class GroupWorker:
    """A Ray actor running one group's units in order in one process (which keeps the model it loaded)."""

    def __init__(self):
        os.environ["MI_MASSIVE_KEEP_MODEL"] = "1"

    def run(self, fn: str, kwargs: Mapping[str, Any], need_ids: Sequence[str], threads: int | None,
            *need_texts: str) -> tuple[str, dict[str, float]]:
        return execute(fn, kwargs, need_ids, threads, *need_texts)


def _run_ray(todo, store, report, *, threads, progress, desc, ray_address, on_poll, share_groups=False):
    import ray

    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                                               "MI_MASSIVE_KEEP_MODEL": "0"}}}
        if ray_address:
            _check_reachable(ray_address)
            try:
                ray.init(address=ray_address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise _unreachable(ray_address, err) from None
        else:
            # address="local": always a new embedded instance, even when another Ray runs on this machine
            # (without it, ray.init would try to join that cluster and refuse num_cpus)
            ray.init(address="local", num_cpus=os.cpu_count(), **kwargs)
        started_here = True
    try:
        remote = ray.remote(execute)
        refs: dict[str, Any] = {}
        costs: dict[Any, Any] = {}
        pending: dict[Any, Unit] = {}
        actors: dict[str, Any] = {}
        left: dict[str, int] = {}
        if share_groups:
            worker = ray.remote(GroupWorker)
            for u in todo:
                if u.group is not None:
                    left[u.group] = left.get(u.group, 0) + 1
            for group in left:
                members = [u for u in todo if u.group == group]
                actors[group] = worker.options(num_cpus=max(u.num_cpus for u in members),
                                               num_gpus=max(u.num_gpus for u in members), max_restarts=0).remote()
        for u in todo:
            args = [refs[n] if n in refs else store.text(n) for n in u.needs]
            call = (u.fn, dict(u.kwargs), list(u.needs), threads or int(u.num_cpus), *args)
            if u.group in actors:
                ref, cost_ref = actors[u.group].run.options(name=u.id, num_returns=2).remote(*call)
            else:
                ref, cost_ref = remote.options(num_cpus=u.num_cpus, num_gpus=u.num_gpus, max_retries=1,
                                               retry_exceptions=False, name=u.id, num_returns=2).remote(*call)
            refs[u.id] = ref  # dependents get the text alone, straight from the object store
            costs[ref] = cost_ref
            pending[ref] = u
        bar = _bar(len(todo), progress, desc)
        with bar:
            while pending:
                if on_poll is not None:
                    on_poll({u.id: r for r, u in pending.items()})
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    u = pending.pop(ref)
                    try:
                        text, cost = ray.get(ref), ray.get(costs[ref])
                    except Exception as err:  # any task failure is a result to report, never a crash of the study
                        _settle(u, store, report, err=err)
                    else:
                        _settle(u, store, report, text, cost)
                    if u.group in actors:
                        left[u.group] -= 1
                        if not left[u.group]:  # the group is finished: free its worker (and the model it holds)
                            ray.kill(actors.pop(u.group))
                    bar.update(1)
                bar.set_postfix_str(_status(len(report.computed), len(pending), len(report.failed)))
    finally:
        if started_here:
            ray.shutdown()


# ------------------------------------------------------------------ one analysis split over layers
def layer_shards(n_layers: int, shards: int) -> list[list[int]]:
    """``n_layers`` split into ``shards`` contiguous, nearly equal groups (no empty group).

    >>> layer_shards(10, 3)
    [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    """
    shards = max(1, min(shards, n_layers))
    size, extra = divmod(n_layers, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + size + (1 if i < extra else 0)
        out.append(list(range(start, stop)))
        start = stop
    return out


def run_layer_shards(store: UnitStore, fn: str, what: str, *, n_layers: int, shards: int,
                     kwargs: Mapping[str, Any], engine: str = "auto", ray_address: str | None = None,
                     num_cpus: float = 1.0, num_gpus: float | None = None, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> tuple[list[list[int]], list[Path]]:
    """Run ``fn`` once per layer group (``kwargs`` plus ``layers=``; units ``shard-000``, ... in ``store``,
    resumable) and return the groups and their result files; a failed shard is a one-line error naming ``what``.

    ``num_gpus`` per shard; None: what ``kwargs``' ``model`` needs at its ``dtype`` on its ``device``
    (:func:`mi_massive.core.sizes.gpus_needed`, with this machine's GPU memory)."""
    from mi_massive.core.sizes import gpus_needed

    num_gpus = gpus_needed(kwargs["model"], kwargs.get("dtype") or "float32", kwargs.get("device"), num_gpus)
    groups = layer_shards(n_layers, shards)
    units = [Unit(id=f"shard-{i:03d}", fn=fn, kwargs={**kwargs, "layers": layers}, num_cpus=num_cpus,
                  num_gpus=num_gpus) for i, layers in enumerate(groups)]
    report = run_units(units, store, engine=engine, ray_address=ray_address, progress=progress,
                       desc=f"{what}: {len(units)} shards", log=log)
    _LAST_MODEL.clear()  # the in-process shards shared one load; the caller holds its own model
    if report.failed:
        uid, reason = next(iter(report.failed.items()))
        raise MiMassiveError(f"{what} shard {uid} failed: {reason} (rerun to resume the missing shards)")
    return groups, [store.path(u.id) for u in units]


def merge_layer_rows(parts: Sequence[Sequence[Any]], groups: Sequence[Sequence[int]], what: str) -> list[Any]:
    """Per-layer rows merged from shards: row ``l`` is row ``l`` of the part whose group owns layer ``l``
    (``groups[i]``: the layers of ``parts[i]``); a one-line error naming ``what`` unless each layer has one owner.

    >>> merge_layer_rows([[[1], [None], [None]], [[None], [2], [3]]], [[0], [1, 2]], "sweep")
    [[1], [2], [3]]
    """
    if sorted(layer for mine in groups for layer in mine) != list(range(len(parts[0]))):
        raise MiMassiveError(f"{what} shards do not cover every layer exactly once")
    out = list(parts[0])
    for part, mine in zip(parts, groups):
        for layer in mine:
            out[layer] = part[layer]
    return out
