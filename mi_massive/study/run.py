"""``mm.study``: the cross-model table -- every (model, analysis) a unit on Ray (or here), merged into one record.

>>> import tempfile, mi_massive as mm
>>> rec = mm.study(["toy-llama"], tempfile.mkdtemp(), corpus="builtin", n_samples=2, seq_len=16,
...                analyses=["scan", "heads"], engine="local", progress=False)
>>> rec.models[0].has_massive, rec.models[0].n_layers, [u.status for u in rec.units]
(False, 3, ['done', 'done'])

Writes, under ``out``: ``units/<model>/<analysis>.json`` (each analysis' own record, atomically, as it
finishes; see :mod:`mi_massive.core.units`), ``study.json`` (:class:`StudyRecord`), ``study.html``
(the table and the depth profiles; offline) and ``last_run.json`` (engine, what was computed / reused /
failed, seconds, time stamp, and each computed unit's cost: seconds, peak memory). Rerunning resumes: only units without a valid result run again. The merged
record depends only on the unit results, never on the order they finished in or the engine.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from mi_massive.core.io import atomic_write_text, prepare_out_dir, utc_now, write_json
from mi_massive.core.sizes import gpus_needed
from mi_massive.core.units import UnitStore, not_applicable_reason, run_units
from mi_massive.errors import MiMassiveError
from mi_massive.study.record import DepthProfile, HeadShare, ModelRow, StudyRecord, UnitState
from mi_massive.study.units import ANALYSES, StudySettings, model_slug, plan_units

UNITS_DIR = "units"


def study(models: Sequence[str], out: str | Path, *, corpus: str = "builtin", n_samples: int = 8,
          seq_len: int = 256, seed: int = 0, prepend_bos: bool | None = None, dtype: str = "float32",
          device: str | None = None, analyses: Sequence[str] = ANALYSES,
          options: dict[str, dict[str, Any]] | None = None, engine: str = "auto", ray_address: str | None = None,
          cpus_per_task: float = 1.0, gpus_per_task: float | None = None, gpu_memory_gib: float = 80.0,
          share_models: bool = False, progress: bool = True,
          on_poll: Callable[[dict[str, Any]], None] | None = None,
          log: Callable[[str], None] | None = None) -> StudyRecord:
    """Run (or resume) a study of ``models`` into ``out`` and return its :class:`StudyRecord` (module doc).

    ``options``: per-analysis keyword arguments (:data:`mi_massive.study.units.PASS_THROUGH`), e.g.
    ``{"intervene": {"n_control": 1}}``. ``engine``: ``auto`` (Ray when installed), ``ray`` or ``local``;
    ``ray_address``: ``auto`` or ``HOST:PORT`` of a running cluster (default: an embedded local Ray).
    ``cpus_per_task`` / ``gpus_per_task``: each unit's Ray resources (and torch threads); GPUs default
    to what the model needs at ``dtype`` on GPUs of ``gpu_memory_gib`` (0 without CUDA or on a CPU device;
    :func:`mi_massive.core.sizes.gpus_needed`). ``share_models``
    (Ray): each model's units run in one worker that loads the model once (loading dominates big studies;
    see docs/scaling.md) instead of one task per unit; the results are the same.
    """
    settings = StudySettings(models=list(models), corpus=corpus, n_samples=n_samples, seq_len=seq_len, seed=seed,
                             prepend_bos=prepend_bos, dtype=dtype, device=device, analyses=list(analyses),
                             options={k: dict(v) for k, v in (options or {}).items()}, num_cpus=cpus_per_task,
                             num_gpus=gpus_per_task, gpu_memory_gib=gpu_memory_gib)
    settings.check()
    out = prepare_out_dir(out)
    gpus = {spec: gpus_needed(spec, settings.dtype, settings.device, settings.num_gpus, settings.gpu_memory_gib)
            for spec in settings.models}
    units = plan_units(settings, gpus)
    store = UnitStore(out / UNITS_DIR)
    report = run_units(units, store, engine=engine, ray_address=ray_address, progress=progress,
                       desc=f"study: {len(settings.models)} model(s) x {len(settings.analyses)} analyses",
                       on_poll=on_poll, log=log, share_groups=share_models)
    record = merge(settings, store, units)
    record.save(out / "study.json")
    from mi_massive.study.page import study_page

    atomic_write_text(out / "study.html", study_page(record))
    write_json(out / "last_run.json", {"finished_utc": utc_now(), "engine": report.engine,
                                        "seconds": round(report.seconds, 3), "computed": report.computed,
                                        "reused": report.reused, "failed": report.failed,
                                        "costs": {i: store.cost(i) for i in report.computed}})
    return record


def merge(settings: StudySettings, store: UnitStore, units) -> StudyRecord:
    """The study record from whatever unit results ``store`` holds (deterministic: model and analysis order)."""
    from mi_massive.analyses.registry import get

    states, rows, profiles = [], [], []
    results = {u.id: json.loads(store.text(u.id)) for u in units if store.done(u)}  # each result read once
    na = {i: r for i, data in results.items() if (r := not_applicable_reason(data)) is not None}
    for u in units:
        if u.id in na:
            states.append(UnitState(id=u.id, status="n/a", reason=na[u.id], file=f"{UNITS_DIR}/{u.id}.json"))
        elif u.id in results:
            states.append(UnitState(id=u.id, status="done", file=f"{UNITS_DIR}/{u.id}.json"))
        else:
            states.append(UnitState(id=u.id, status="failed", reason=store.error(u.id) or "not run"))
    for spec in settings.models:
        slug = model_slug(spec)
        row = ModelRow(model=spec, folder=slug)
        recs = {}
        for name in settings.analyses:
            uid = f"{slug}/{name}"
            if uid in na:
                continue
            if uid in results:
                recs[name] = get(name).record.from_dict(results[uid])
            else:
                row.missing.append(name)
        if "scan" in recs:
            _fill_scan(row, recs["scan"])
            profiles.append(_profile(spec, recs["scan"]))
        if "heads" in recs:
            ranked = [h for h in recs["heads"].ranking("first") if h.to_first is not None]
            row.top_heads = [HeadShare(label=f"L{h.layer}H{h.head}", share=h.to_first) for h in ranked[:3]]
        if "intervene" in recs:
            _fill_intervene(row, recs["intervene"])
        if "attribute" in recs:
            att = recs["attribute"]
            top = att.top_terms(1)
            if top:
                row.writer = top[0].label
                row.writer_share = top[0].value / att.residual if att.residual else None
            row.writer_entry = [att.layer, att.position, att.dim]
        rows.append(row)
    return StudyRecord(settings=asdict(settings), models=rows, profiles=profiles, units=states)


def _fill_scan(row: ModelRow, scan) -> None:
    model = scan.provenance.get("model", {})
    corpus = scan.provenance.get("corpus", {})
    row.architecture, row.n_layers, row.dtype = model.get("architecture"), model.get("n_layers"), model.get("dtype")
    row.n_params = scan.provenance.get("options", {}).get("n_params")
    row.prepend_bos, row.bos_source = corpus.get("prepend_bos"), corpus.get("prepend_bos_source")
    s = scan.summary
    row.has_massive, row.first_layer = s.has_massive, s.first_layer
    row.dims = [d.dim for d in s.dims]
    if scan.massive:
        top = max(scan.massive, key=lambda e: (abs(e.value), -e.layer, -e.sequence, -e.position, -e.dim))
        row.largest, row.largest_ratio = abs(top.value), top.ratio_to_median
    positions = Counter({p.position: p.count for p in s.positions})
    row.positions = [p for p, _ in sorted(positions.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    row.tokens = [t.token for t in s.tokens[:3]]


def _profile(spec: str, scan) -> DepthProfile:
    blocks = scan.block_layers
    n = max(len(blocks) - 1, 1)
    return DepthProfile(model=spec, relative_depth=[r.layer / n for r in blocks],
                        top1=[r.top_values[0] for r in blocks], median=[r.median for r in blocks])


def _fill_intervene(row: ModelRow, res) -> None:
    by = {r.condition: r for r in res.table}
    if "original" in by:
        row.ppl_original = by["original"].ppl
    for attr, condition in (("ppl_zero", "zero (one layer)"), ("ppl_mean", "mean (one layer)")):
        if condition in by:
            setattr(row, attr, by[condition].ratio)
            setattr(row, f"{attr}_ci95", list(by[condition].ratio_ci95))


def load_study(path: str | Path) -> StudyRecord:
    """Read ``study.json`` (a file or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "study.json"
    if not path.is_file():
        raise MiMassiveError(f"no study at {path}")
    return StudyRecord.load(path)
