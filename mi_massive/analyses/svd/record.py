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
class SvdResult(Record):
    """SVD of ``W_out`` of block ``layer`` and the alignment of tokens with its top input direction u_1.

    Orientation: ``out = h @ W_out`` with ``W_out`` [d_mlp, d_model] = U diag(S) V^T; input (neuron-space)
    directions are the columns of U, output (residual) directions the rows of V^T; signs fixed so that
    V^T[k, dim] >= 0 for every k. ``regression``: OLS of y = mlp_out[t, dim] - b_out[dim] on h_t . u_1 per
    position class, with R^2 and a bootstrap CI, plus a plain statement when the fit is near-tautological.
    """

    provenance: dict[str, Any]
    layer: int
    dim: int
    spectrum: dict[str, Any]
    alignment: dict[str, Any]
    regression: dict[str, Any]
    notes: list[str] = field(default_factory=list)
