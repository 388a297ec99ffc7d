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
class Contribution:
    """One additive term of a residual entry: ``value`` in residual units (signed).

    ``kind``: ``embed``, ``pos_embed``, ``head``, ``attn_bias`` (b_O), ``mlp`` (a whole MLP output,
    b_out included), ``neuron`` (h_post[t, n] * W_out[n, d] of the dominant MLP), ``mlp_bias``.
    Neurons, ``neuron_rest`` and ``mlp_bias`` of the dominant MLP *refine* its ``mlp`` term (they are not added again).
    """

    kind: str
    label: str
    value: float
    layer: int | None = None
    index: int | None = None  # head or neuron


@dataclass(repr=False)
class AttributionResult(Record):
    """Exact decomposition of h_L[sequence, position, dim] (``hook`` = ``blocks.L.hook_resid_post``).

    ``total`` = sum of the non-refining terms; ``rel_error`` = |total - residual| / |residual|.
    ``dominant_mlp``: the MLP layer with the largest |contribution|, decomposed per neuron.
    """

    provenance: dict[str, Any]
    layer: int
    position: int
    dim: int
    sequence: int
    token: str
    residual: float
    total: float
    rel_error: float
    dominant_mlp: int | None
    contributions: list[Contribution]
    per_sequence: list[dict[str, Any]] = field(default_factory=list)

    def terms(self) -> list[Contribution]:
        """The terms that add up to the residual (embeddings, heads, attention biases, MLP outputs)."""
        return [c for c in self.contributions if c.kind not in ("neuron", "neuron_rest", "mlp_bias")]

    def top(self, k: int = 10, *, kinds: tuple[str, ...] | None = None) -> list[Contribution]:
        pool = self.contributions if kinds is None else [c for c in self.contributions if c.kind in kinds]
        return sorted(pool, key=lambda c: -abs(c.value))[:k]

