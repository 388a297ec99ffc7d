"""The study's units: one function per (model, analysis), run by :func:`mi_massive.core.units.run_units`.

>>> from mi_massive.study.units import plan_units, StudySettings
>>> s = StudySettings(models=["toy-llama"], corpus="builtin", n_samples=2, seq_len=16)
>>> [u.id for u in plan_units(s)]
['toy-llama/scan', 'toy-llama/heads', 'toy-llama/intervene', 'toy-llama/attribute']

Each function loads the model (:func:`mi_massive.core.units.unit_model`: sharded over the GPUs of its unit, and
kept for the next unit of the same model in this process),
builds the corpus exactly as the analysis' own command does, calls the analysis' public function and
returns its record as JSON text -- the same record the command writes. ``heads`` and ``attribute``
read the model's ``scan`` (the massive positions; the strongest entry at the first massive block).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from mi_massive.core.io import to_json
from mi_massive.core.units import NotApplicable, Unit, unit_model
from mi_massive.errors import MiMassiveError

ANALYSES = ("scan", "heads", "intervene", "attribute")
NEEDS_SCAN = ("heads", "attribute")

#: API keyword arguments ``--set ANALYSIS.KEY=VALUE`` may pass through, per analysis.
PASS_THROUGH: dict[str, tuple[str, ...]] = {
    "scan": ("top_k", "abs_threshold", "rel_threshold", "include_embed"),
    "heads": ("min_query",),
    "intervene": ("n_calib", "n_control", "variants", "targets", "abs_threshold", "rel_threshold", "n_boot", "layer"),
    "attribute": ("layer", "position", "dim"),
}
_DEFAULT_BATCH = {"scan": None, "heads": 8, "intervene": 4, "attribute": 2}


@dataclass
class StudySettings:
    """What a study runs: ``models`` (specs), the shared corpus options, ``prepend_bos`` (None: each model's
    tokenizer decides), ``dtype``/``device``, the ``analyses`` and per-analysis ``options`` (API keyword
    arguments), ``num_cpus``/``num_gpus`` per unit (``num_gpus=None``: from the model's size)."""

    models: list[str]
    corpus: str = "builtin"
    n_samples: int = 8
    seq_len: int = 256
    seed: int = 0
    prepend_bos: bool | None = None
    dtype: str = "float32"
    device: str | None = None
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_cpus: float = 1.0
    num_gpus: float | None = None
    gpu_memory_gib: float = 80.0

    def check(self) -> None:
        if not self.models:
            raise MiMassiveError("no models given")
        if len(set(self.models)) != len(self.models):
            raise MiMassiveError("a model is listed twice")
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad or not self.analyses:
            raise MiMassiveError(f"unknown analysis '{bad[0] if bad else ''}'; a study runs {', '.join(ANALYSES)}")
        for name in self.analyses:
            if name in NEEDS_SCAN and "scan" not in self.analyses:
                raise MiMassiveError(f"{name} needs the scan: add scan to --analyses")
        for name, opts in self.options.items():
            if name not in ANALYSES:
                raise MiMassiveError(f"--set {name}.…: unknown analysis '{name}'")
            for key in opts:
                if key not in PASS_THROUGH[name]:
                    raise MiMassiveError(f"--set {name}.{key}: not an option of {name} here; "
                                         f"known: {', '.join(PASS_THROUGH[name])}")
        for name in ("n_samples", "seq_len"):
            if getattr(self, name) < 1:
                raise MiMassiveError(f"--{name.replace('_', '-')} must be a positive integer")
        if not (self.num_cpus > 0 and math.isfinite(self.num_cpus)):
            raise MiMassiveError("--cpus-per-task must be a positive number")
        if self.num_gpus is not None and not (self.num_gpus >= 0 and math.isfinite(self.num_gpus)):
            raise MiMassiveError("--gpus-per-task must be a non-negative number")


def model_slug(spec: str) -> str:
    """A file-safe folder name for a model spec (``random:llama-2-7b`` -> ``random-llama-2-7b``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.strip()).strip("-.") or "model"
    return slug[:80]


def plan_units(settings: StudySettings, gpus: Mapping[str, float] | None = None) -> list[Unit]:
    """Every (model, analysis) unit, models in the given order, each model's scan first."""
    settings.check()
    slugs: dict[str, str] = {}
    for spec in settings.models:
        slug = model_slug(spec)
        if slug in slugs.values():
            raise MiMassiveError(f"models '{spec}' and '{next(k for k, v in slugs.items() if v == slug)}' share the "
                                 f"folder name '{slug}'")
        slugs[spec] = slug
    base = {k: v for k, v in asdict(settings).items()
            if k in ("corpus", "n_samples", "seq_len", "seed", "prepend_bos", "dtype", "device")}
    units = []
    for spec in settings.models:
        for name in [a for a in ANALYSES if a in settings.analyses]:
            units.append(Unit(
                id=f"{slugs[spec]}/{name}", fn=f"mi_massive.study.units:{name}_unit",
                kwargs={"model": spec, **base, "options": dict(settings.options.get(name, {}))},
                needs=(f"{slugs[spec]}/scan",) if name in NEEDS_SCAN else (),
                num_cpus=settings.num_cpus, num_gpus=(gpus or {}).get(spec, 0.0), group=slugs[spec]))
    return units


# ------------------------------------------------------------------------------------------- in the worker
def _corpus(bridge, corpus: str, n_samples: int, seq_len: int, seed: int, prepend_bos: bool | None):
    """The corpus as the analysis' own command builds it; BOS resolved here for this model (None: its tokenizer's
    convention), so building it warns nothing (the choice is recorded in the corpus)."""
    from mi_massive.core.bos import resolve_bos
    from mi_massive.core.corpus import load_corpus

    choice = resolve_bos(bridge, prepend_bos)
    return load_corpus(bridge, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed,
                       prepend_bos=choice.prepend_bos, prepend_bos_source=choice.source)


def _scan_of(needs: Mapping[str, str]):
    """The model's scan, which a unit that needs it receives as JSON text."""
    import json

    from mi_massive.analyses.scan.record import ScanResult

    return ScanResult.from_dict(json.loads(next(iter(needs.values()))))


def _n_params(bridge) -> int:
    hf = getattr(bridge, "original_model", None) or bridge
    return int(sum(p.numel() for p in hf.parameters()))


def _text(record) -> str:
    return to_json(record.to_dict())


def scan_unit(needs: Mapping[str, str], *, model: str, corpus: str, n_samples: int, seq_len: int, seed: int,
              prepend_bos: bool | None, dtype: str, device: str | None, options: Mapping[str, Any]) -> str:
    """``mi-massive scan`` of one model (its record's JSON; ``options.n_params`` added for the study table)."""
    from mi_massive.analyses.scan.run import scan

    bridge = unit_model(model, dtype, device)
    data = _corpus(bridge, corpus, n_samples, seq_len, seed, prepend_bos)
    res = scan(bridge, data, progress=False, **options,
               options={"prepend_bos": data.prepend_bos, "dtype": dtype, "n_params": _n_params(bridge)})
    return _text(res)


def heads_unit(needs: Mapping[str, str], *, model: str, corpus: str, n_samples: int, seq_len: int, seed: int,
               prepend_bos: bool | None, dtype: str, device: str | None, options: Mapping[str, Any]) -> str:
    """``mi-massive heads`` of one model, the massive positions from its scan."""
    from mi_massive.analyses.heads.run import heads, massive_positions_from_scan

    bridge = unit_model(model, dtype, device)
    data = _corpus(bridge, corpus, n_samples, seq_len, seed, prepend_bos)
    res = heads(bridge, data, massive_positions=massive_positions_from_scan(_scan_of(needs), len(data)),
                batch_size=_DEFAULT_BATCH["heads"], progress=False, **options,
                options={"prepend_bos": data.prepend_bos, "dtype": dtype})
    return _text(res)


def intervene_unit(needs: Mapping[str, str], *, model: str, corpus: str, n_samples: int, seq_len: int, seed: int,
                   prepend_bos: bool | None, dtype: str, device: str | None, options: Mapping[str, Any]) -> str:
    """``mi-massive intervene`` of one model: evaluation = the study's ``n_samples`` windows, calibration =
    ``n_calib`` (default 16) disjoint windows of the same text, as the command does with ``--calib-corpus split``."""
    from mi_massive.analyses.intervene.run import intervene, split_corpus

    opts = dict(options)
    n_calib = int(opts.pop("n_calib", 16))
    if "variants" in opts:
        opts["variants"] = tuple(opts["variants"])
    bridge = unit_model(model, dtype, device)
    eval_c, cal_c = split_corpus(_corpus(bridge, corpus, n_samples + n_calib, seq_len, seed, prepend_bos), n_samples)
    try:
        res = intervene(bridge, eval_c, cal_c, seed=seed, batch_size=_DEFAULT_BATCH["intervene"], progress=False,
                        **opts, options={"dtype": dtype, "corpus": corpus, "calib_corpus": "split"})
    except MiMassiveError as err:
        if str(err).startswith("no massive activation"):
            raise NotApplicable(str(err)) from None
        raise
    return _text(res)


def attribute_unit(needs: Mapping[str, str], *, model: str, corpus: str, n_samples: int, seq_len: int, seed: int,
                   prepend_bos: bool | None, dtype: str, device: str | None, options: Mapping[str, Any]) -> str:
    """``mi-massive attribute`` of one model's strongest massive entry at its first massive block (from the scan;
    ``options`` may fix ``layer``/``position``/``dim``)."""
    from mi_massive.analyses.attribute.run import attribute, strongest_entry

    bridge = unit_model(model, dtype, device)
    scan_res = _scan_of(needs)
    layer, position, dim = options.get("layer"), options.get("position"), options.get("dim")
    if (layer is None or position is None or dim is None) and not scan_res.summary.has_massive:
        raise NotApplicable("the scan found no massive activation to attribute")
    if layer is None or position is None or dim is None:
        sl, sp, sd = strongest_entry(scan_res)
        layer, position, dim = (sl if layer is None else layer, sp if position is None else position,
                                sd if dim is None else dim)
    data = _corpus(bridge, corpus, n_samples, seq_len, seed, prepend_bos)
    res = attribute(bridge, data, int(layer), int(position), int(dim), batch_size=_DEFAULT_BATCH["attribute"],
                    options={"prepend_bos": data.prepend_bos, "dtype": dtype})
    return _text(res)
