"""Typed records of the causal experiments and their JSON form.

Files: ``heads.json`` (:class:`HeadScores`), ``attribution.json`` (:class:`AttributionResult`),
``ablation.json`` (:class:`AblationResult`), ``patching.json`` (:class:`PatchingResult`),
``sweep.json`` (:class:`SweepResult`). Every file has a top-level ``provenance``. Layers and heads
are 0-based; residual values are signed and in residual-stream units unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mi_massive.core.records import Record


@dataclass(repr=False)
class SweepResult(Record):
    """Single-head ablation sweep.

    ``values[layer][head][sequence][metric]``: each metric with that one head ablated;
    ``baseline[sequence][metric]``: unablated. Metrics: ``entry L{l} p{pos} d{dim}`` (signed residual
    value) and optionally ``loss`` (mean next-token cross-entropy, nats). ``effect[layer][head][metric]``
    = mean over sequences of values - baseline.
    """

    provenance: dict[str, Any]
    metric_names: list[str]
    mode: str
    method: str
    baseline: list[list[float]]
    values: list[list[list[list[float]]]]
    effect: list[list[list[float]]]
    seconds: float

