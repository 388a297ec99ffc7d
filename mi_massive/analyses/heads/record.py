"""The record of head sink scores (``heads.json``): one :class:`HeadScore` per (layer, head).

>>> rec = HeadScores(provenance={}, n_layers=1, n_heads=2, min_query=1, massive_positions=[[0]],
...                  heads=[HeadScore(0, 0, 0.9, [0.8, 1.0], 0.9, [0.8, 1.0], 1),
...                         HeadScore(0, 1, 0.1, [0.0, 0.2], 0.1, [0.0, 0.2], 1)],
...                  per_sequence_first=[[[0.9], [0.1]]], per_sequence_massive=[[[0.9], [0.1]]])
>>> rec.top_k(1), rec.to_dataframe().shape
([(0, 0)], (2, 7))

Layers and heads are 0-based; scores are attention probabilities (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mi_massive.core.records import Record


@dataclass
class HeadScore:
    """Sink scores of one head (probabilities, 0..1).

    ``to_first``: mean over sequences of the per-sequence mean over queries q >= ``min_query`` of
    A[q, 0]; ``to_massive``: the same for the summed attention to the positions the scan found
    massive in that sequence (None when no sequence has one). ``*_ci95``: 95% t-interval over
    sequences; ``n_massive``: number of sequences that had massive positions.
    """

    layer: int
    head: int
    to_first: float
    to_first_ci95: list[float]
    to_massive: float | None
    to_massive_ci95: list[float] | None
    n_massive: int


@dataclass(repr=False)
class HeadScores(Record):
    """Per-head sink scores (``heads``, one row each in ``to_dataframe()``).

    ``min_query``: the first query position averaged over; ``massive_positions[i]``: the key set of
    sequence i; ``per_sequence_first``/``per_sequence_massive``: [layer][head][sequence] scores
    (None where a sequence has no massive position).
    """

    _table: ClassVar[str | None] = "heads"

    provenance: dict[str, Any]
    n_layers: int
    n_heads: int
    min_query: int
    massive_positions: list[list[int]]
    heads: list[HeadScore]
    per_sequence_first: list[list[list[float]]]
    per_sequence_massive: list[list[list[float | None]]]

    def matrix(self, by: str = "first") -> list[list[float]]:
        """[layer][head] of the mean score (``by`` = ``first`` or ``massive``; missing -> nan)."""
        key = "to_first" if by == "first" else "to_massive"
        out = [[float("nan")] * self.n_heads for _ in range(self.n_layers)]
        for h in self.heads:
            value = getattr(h, key)
            out[h.layer][h.head] = float("nan") if value is None else value
        return out

    def ranking(self, by: str = "first") -> list[HeadScore]:
        """Heads sorted by score, highest first (heads without a score last)."""
        key = "to_first" if by == "first" else "to_massive"
        return sorted(self.heads, key=lambda h: -(getattr(h, key) if getattr(h, key) is not None else -1.0))

    def top_k(self, k: int, by: str = "first") -> list[tuple[int, int]]:
        return [(h.layer, h.head) for h in self.ranking(by)[:k]]

    def bottom_k(self, k: int, by: str = "first") -> list[tuple[int, int]]:
        ranked = [h for h in self.ranking(by) if getattr(h, "to_first" if by == "first" else "to_massive") is not None]
        return [(h.layer, h.head) for h in ranked[::-1][:k]]

