"""Typed records of the mechanism analyses (``mlp.json``, ``svd.json``, ``tokens.json``, ``intervene.json``).

Each result is a dataclass with ``provenance`` (model, corpus, options, versions) first; ``save`` writes
it atomically as JSON and ``load`` reads the plain dict back. Units are stated per field: residual
values are in the model's own residual units, perplexities are exp(nats per token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record


@dataclass(repr=False)
class InterventionResult(Record):
    """Perplexity under Sun/Owen-style interventions at the first massive layer (one layer and every layer).

    ``runs``: one record per condition with the per-chunk NLL sums (nats) and scored-token counts, the
    perplexity with a bootstrap CI over chunks, the paired ratio to ``original`` with its CI, and the
    regeneration profile (mean |h| at the edited entries per later layer: clean, block-computed before
    the edit, after the edit). ``calibration``: the means (per layer, position class and dim) and where
    they come from (text disjoint from the evaluation chunks).
    """

    provenance: dict[str, Any]
    first_layer: int
    dims: list[int]
    edited_layers_all: list[int]
    calibration: dict[str, Any]
    evaluation: dict[str, Any]
    runs: list[dict[str, Any]]
    table: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
