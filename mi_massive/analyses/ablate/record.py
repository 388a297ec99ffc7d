"""The record of an ablation experiment (``ablation.json``): baseline, conditions, effects, nulls.

>>> e = Effect(metric="top1", layer=2, baseline=3000.0, ablated=10.0, mean=-2990.0, ci95=[-2995.0, -2985.0],
...            relative=-0.997, label="no null")
>>> rec = AblationResult(provenance={}, metrics=["top1@2"], tracked=[], baseline={"top1@2": [3000.0]},
...                      rerun_max_abs_diff=0.0, conditions=[Condition("MLP 1", "mlp", [1], "zero", [e])])
>>> rec.to_dataframe()[["condition", "metric", "layer", "mean"]].values.tolist()
[['MLP 1', 'top1', 2, -2990.0]]

Layers are 0-based block indices; metric values are |h| (``top1``) or signed h (``entry ...``) in
residual-stream units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    """One ablation (what was removed and how) with its effects and the null's per-set mean changes.

    ``kind``: ``heads`` (``targets`` = [[layer, head]]), ``attention`` / ``mlp`` ([layer]) or
    ``neurons`` ({"layer": [neuron]}); ``mode``: zero, mean or resample. ``null_kind`` describes the
    random sets (None: no null), ``null_sets`` lists them and ``null_means["metric@layer"]`` holds
    the mean change under each.
    """

    name: str
    kind: str  # heads, attention, mlp, neurons
    targets: Any
    mode: str
    effects: list[Effect]
    null_kind: str | None = None
    null_sets: list = field(default_factory=list)
    null_means: dict[str, list[float]] = field(default_factory=dict)  # "metric@layer" -> per random set


@dataclass(repr=False)
class AblationResult(Record):
    """Baseline metrics and every condition. Metrics: ``top1`` (max |h| per layer and sequence) and
    ``entry p{pos} d{dim}`` (signed h[pos, dim] at every layer) for each tracked entry.

    ``metrics``: every ``metric@layer`` key; ``tracked``: [[position, dim]]; ``baseline``: per key the
    per-sequence values without ablation; ``rerun_max_abs_diff``: the largest difference between two
    identical baseline runs (the numerical noise floor). ``to_dataframe()``: one row per (condition,
    metric, layer) effect.
    """

    _table: ClassVar[str | None] = "conditions"

    provenance: dict[str, Any]
    metrics: list[str]
    tracked: list[list[int]]
    baseline: dict[str, list[float]]  # "metric@layer" -> per sequence
    rerun_max_abs_diff: float
    conditions: list[Condition]

    def to_dataframe(self):
        """One row per effect: ``condition``, ``kind``, ``mode``, ``metric``, ``layer``, ``baseline``,
        ``ablated``, ``mean`` (change), ``ci_low``/``ci_high`` (95% bootstrap), ``relative``,
        ``null_low``/``null_high`` (the null's 95% range; NaN without a null), ``within_noise``, ``label``."""
        import pandas as pd

        nan = float("nan")
        rows = []
        for c in self.conditions:
            for e in c.effects:
                null = e.null_ci95 or [nan, nan]
                rows.append({"condition": c.name, "kind": c.kind, "mode": c.mode, "metric": e.metric,
                             "layer": e.layer, "baseline": e.baseline, "ablated": e.ablated, "mean": e.mean,
                             "ci_low": e.ci95[0], "ci_high": e.ci95[1], "relative": e.relative,
                             "null_low": null[0], "null_high": null[1], "within_noise": e.within_noise,
                             "label": e.label})
        return pd.DataFrame(rows)
