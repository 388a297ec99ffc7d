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
class PatchingResult(Record):
    """Activation patching clean -> corrupted.

    ``results[component]`` is a [layer][pos] grid (resid_pre, attn_out, mlp_out) or [layer][head]
    (head), each cell the metric of the corrupted run with that one activation replaced by the
    clean one. ``clean`` / ``corrupted``: the unpatched metric values. ``normalised`` grids are
    (patched - corrupted) / (clean - corrupted): 1 = fully restored.
    """

    provenance: dict[str, Any]
    metric: str
    clean: float
    corrupted: float
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    results: dict[str, list[list[float]]]
    normalised: dict[str, list[list[float]]]
    backend: str
