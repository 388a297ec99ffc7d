"""Typed records of the causal experiments and their JSON form.

Files: ``heads.json`` (:class:`HeadScores`), ``attribution.json`` (:class:`AttributionResult`),
``ablation.json`` (:class:`AblationResult`), ``patching.json`` (:class:`PatchingResult`),
``sweep.json`` (:class:`SweepResult`). Every file has a top-level ``provenance``. Layers and heads
are 0-based; residual values are signed and in residual-stream units unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record


@dataclass
class Effect:
    """Change of one metric at one layer under an ablation: ablated - baseline, per sequence.

    ``mean`` and ``ci95`` (percentile bootstrap over sequences) are in the metric's units;
    ``relative`` = mean / |baseline mean|. ``null_ci95``: 2.5/97.5% quantiles of the same mean change
    under random same-size ablations; ``within_noise`` is True when ``mean`` lies inside that range
    (None: no null was run).
    """

    metric: str
    layer: int
    baseline: float
    ablated: float
    mean: float
    ci95: list[float]
    relative: float
    null_ci95: list[float] | None = None
    within_noise: bool | None = None
    label: str = ""


@dataclass
class Condition:
    """One ablation (what was removed and how) with its effects and the null's per-set mean changes."""

    name: str
    kind: str  # heads, attention, mlp, neurons
    targets: list
    mode: str
    effects: list[Effect]
    null_kind: str | None = None
    null_sets: list = field(default_factory=list)
    null_means: dict[str, list[float]] = field(default_factory=dict)  # "metric@layer" -> per random set


@dataclass(repr=False)
class AblationResult(Record):
    """Baseline metrics and every condition. Metrics: ``top1`` (max |h| per layer and sequence) and
    ``entry p{pos} d{dim}`` (signed h[pos, dim] at every layer) for each tracked entry."""

    provenance: dict[str, Any]
    metrics: list[str]
    tracked: list[list[int]]
    baseline: dict[str, list[float]]  # "metric@layer" -> per sequence
    rerun_max_abs_diff: float
    conditions: list[Condition]

