"""The record of an exact attribution (``attribution.json``): every additive term of one entry.

>>> c = Contribution("head", "L0H1", 2.5, 0, 1)
>>> (c.kind, c.label, c.value, c.layer, c.index)
('head', 'L0H1', 2.5, 0, 1)

Layers and heads are 0-based; values are signed, in residual-stream units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mi_massive.core.records import Record


REFINING = ("neuron", "mlp_bias", "neuron_rest")  # kinds that refine the dominant MLP term, not added again


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


@dataclass
class SequenceAttribution:
    """The decomposition of the entry in one sequence (residual units, signed).

    ``sequence``: index in the corpus; ``residual``: h_L[position, dim] of that sequence; ``total``:
    the sum of its terms; ``rel_error``: |total - residual| / max(|residual|, largest |term|);
    ``dominant_mlp``: the MLP
    layer with the largest |output| there; ``top``: its five largest terms as [label, value] pairs.
    """

    sequence: int
    residual: float
    total: float
    rel_error: float
    dominant_mlp: int | None
    top: list[list[Any]]


@dataclass(repr=False)
class AttributionResult(Record):
    """Exact decomposition of h_L[sequence, position, dim] (``hook`` = ``blocks.L.hook_resid_post``).

    ``total`` = sum of the non-refining terms; ``rel_error`` = |total - residual| / max(|residual|,
    largest |term|). Post-norm models (Gemma-2/3, OLMo-2) record ``provenance.options.linearised_norms``
    and a ``note``: each norm after a sublayer is linearised at the RMS scale this forward used (exact).
    ``dominant_mlp``: the MLP layer with the largest |contribution|, decomposed per neuron.
    ``sequence``: -1 when the reported terms are means over several sequences; ``token``: the token
    string at ``position`` in the first sequence. ``per_sequence``: one :class:`SequenceAttribution`
    per sequence. ``to_dataframe()``: one row per contribution (kind, label, value, layer, index).
    """

    _table: ClassVar[str | None] = "contributions"

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
    per_sequence: list[SequenceAttribution] = field(default_factory=list)

    def terms(self) -> list[Contribution]:
        """The terms that add up to the residual (embeddings, heads, attention biases, MLP outputs)."""
        return [c for c in self.contributions if c.kind not in REFINING]

    def top_terms(self, k: int = 10) -> list[Contribution]:
        """The ``k`` :meth:`terms` (the writers that add up to the residual) with the largest |value|."""
        return sorted(self.terms(), key=lambda c: -abs(c.value))[:k]

    def top(self, k: int = 10, *, kinds: tuple[str, ...] | None = None) -> list[Contribution]:
        """The ``k`` contributions (of the given ``kinds``) with the largest |value|."""
        pool = self.contributions if kinds is None else [c for c in self.contributions if c.kind in kinds]
        return sorted(pool, key=lambda c: -abs(c.value))[:k]

