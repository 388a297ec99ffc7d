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
    """Single-component ablation sweep (every head; every MLP with ``mlps``).

    ``values[layer][head][sequence][metric]``: each metric with that one head ablated;
    ``baseline[sequence][metric]``: unablated. Metrics: ``entry L{l} p{pos} d{dim}`` (signed residual
    value) and optionally ``loss`` (mean next-token cross-entropy, nats). ``effect[layer][head][metric]``
    = mean over sequences of values - baseline. ``mlp_values[layer][sequence][metric]`` /
    ``mlp_effect[layer][metric]``: the same with the MLP of that layer ablated (None without ``mlps``).
    ``mode``: zero or mean; ``method``: fast or naive (same numbers). The wall time is kept with the time
    stamp in ``provenance["timing"]["seconds"]`` (``seconds``), so a rerun writes the same numbers.
    """

    provenance: dict[str, Any]
    metric_names: list[str]
    mode: str
    method: str
    baseline: list[list[float]]
    values: list[list[list[list[float]]]]
    effect: list[list[list[float]]]
    mlp_values: list[list[list[float]]] | None = None
    mlp_effect: list[list[float]] | None = None

    @property
    def seconds(self) -> float | None:
        """Wall time of the sweep (s), from ``provenance["timing"]``."""
        return (self.provenance.get("timing") or {}).get("seconds")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepResult":
        if isinstance(data, dict) and "seconds" in data:  # files from before the timing moved into provenance
            data = {k: v for k, v in data.items() if k != "seconds"}
            data["provenance"] = {**data.get("provenance", {}), "timing": {"seconds": data.get("seconds")}}
        return super().from_dict(data)

    def ranked(self, metric: int = 0, top: int | None = None) -> list[dict[str, Any]]:
        """Heads (and MLPs) ordered by |effect| on metric ``metric`` (index into ``metric_names``), largest first.

        >>> rec = SweepResult(provenance={}, metric_names=["m"], mode="zero", method="fast", baseline=[[10.0]],
        ...                   values=[], effect=[[[-1.0], [-8.0]]], mlp_effect=[[3.0]])
        >>> [(r["component"], r["effect"]) for r in rec.ranked()]
        [('L0H1', -8.0), ('MLP 0', 3.0), ('L0H0', -1.0)]

        Each row: ``component`` (``L{layer}H{head}`` or ``MLP {layer}``), ``kind``, ``layer``, ``head``
        (None for an MLP), ``effect`` (mean over sequences of ablated - baseline, the metric's units) and
        ``relative`` (effect / mean baseline; NaN when the baseline is 0).
        """
        base = sum(row[metric] for row in self.baseline) / max(len(self.baseline), 1)
        rows = [{"component": f"L{layer}H{head}", "kind": "head", "layer": layer, "head": head, "effect": e[metric]}
                for layer, heads in enumerate(self.effect) for head, e in enumerate(heads)]
        rows += [{"component": f"MLP {layer}", "kind": "mlp", "layer": layer, "head": None, "effect": e[metric]}
                 for layer, e in enumerate(self.mlp_effect or [])]
        for r in rows:
            r["relative"] = r["effect"] / base if base else float("nan")
        rows.sort(key=lambda r: -abs(r["effect"]) if r["effect"] == r["effect"] else 0.0)
        return rows[:top] if top else rows

    def to_dataframe(self):
        """One row per head and MLP (:meth:`ranked` for the first metric), largest |effect| first."""
        import pandas as pd

        return pd.DataFrame(self.ranked())

