"""Typed records of a massive-activation scan and their JSON form (``scan.json``).

The JSON contract (read by other tools): top-level ``provenance``, ``tokens``, ``str_tokens``,
``layers`` (one entry per hook), ``massive`` and ``near_massive`` (entries), ``summary``.
All values are |h| in residual-stream units unless a field says ``signed``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record


EMBED_LAYER = -1  # layer index used for the embeddings (hook blocks.0.hook_resid_pre)


@dataclass
class LayerRecord:
    """Statistics of one hook over the corpus.

    ``top_values``: the mean over sequences of the per-sequence top-k |h| (k floats, descending);
    ``top_values_std`` / ``top_values_ci95``: their std and 95% t-interval over sequences.
    ``median``: mean over sequences of the per-sequence median |h| (pads excluded).
    ``ratio``: mean over sequences of top-1 / median. ``top1_max``: max over sequences of top-1.
    ``dim_max``: per dim, the max over sequences and positions of |h| (d_model floats).
    ``per_sequence``: the raw per-sequence values (``top_values``, ``top_positions``, ``top_dims``,
    ``median``, ``ratio``), one row per sequence.
    """

    layer: int
    hook: str
    label: str
    top_values: list[float]
    top_values_std: list[float]
    top_values_ci95: list[list[float]]
    median: float
    median_std: float
    median_ci95: list[float]
    ratio: float
    ratio_std: float
    ratio_ci95: list[float]
    top1_max: float
    dim_max: list[float]
    per_sequence: dict[str, list]
    n_massive: int = 0
    massive_dims: list[int] = field(default_factory=list)


@dataclass
class MassiveEntry:
    """One flagged coordinate: ``value`` is the signed h[layer][sequence, position, dim]."""

    layer: int
    hook: str
    sequence: int
    position: int
    dim: int
    value: float
    token: str
    token_id: int
    ratio_to_median: float


@dataclass(repr=False)
class ScanResult(Record):
    """A whole scan. ``summary`` is derived from ``massive`` by :func:`summarize_entries`."""

    provenance: dict[str, Any]
    tokens: list[list[int]]
    str_tokens: list[list[str]]
    layers: list[LayerRecord]
    massive: list[MassiveEntry]
    near_massive: list[MassiveEntry]
    near_massive_total: int
    summary: dict[str, Any]

    def layer(self, layer: int, hook: str | None = None) -> LayerRecord:
        """The record of a layer index (``-1`` = embeddings)."""
        for rec in self.layers:
            if rec.layer == layer and (hook is None or rec.hook == hook):
                return rec
        raise KeyError(f"no layer {layer} in this scan")

    @property
    def block_layers(self) -> list[LayerRecord]:
        """Records of the block outputs (``hook_resid_post``), in layer order."""
        return [r for r in self.layers if r.layer != EMBED_LAYER]

    def massive_coordinates(self, layer: int | None = None) -> list[tuple[int, int, int]]:
        """Distinct (layer, position, dim) of massive entries, optionally of one layer."""
        coords = {(e.layer, e.position, e.dim) for e in self.massive if layer is None or e.layer == layer}
        return sorted(coords)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanResult":
        data = {**data}
        data.setdefault("near_massive_total", len(data.get("near_massive", [])))  # files from before the count
        return super().from_dict(data)


def summarize_entries(massive: list[MassiveEntry], n_sequences: int) -> dict[str, Any]:
    """Which dims, positions and tokens carry massive entries, and where they first appear.

    ``first_layer``: smallest block index with a massive entry in any sequence (None if none);
    ``first_layer_per_sequence``: the same per sequence; ``dims``: per dim the number of entries,
    the layers it appears in and the largest |value|; ``positions``/``tokens``: entry counts.
    """
    blocks = [e for e in massive if e.layer != EMBED_LAYER]
    per_seq: dict[int, int] = {}
    for e in blocks:
        per_seq[e.sequence] = min(per_seq.get(e.sequence, e.layer), e.layer)
    dims: dict[int, dict[str, Any]] = {}
    for e in massive:
        d = dims.setdefault(e.dim, {"dim": e.dim, "count": 0, "layers": set(), "max_abs": 0.0})
        d["count"] += 1
        d["layers"].add(e.layer)
        d["max_abs"] = max(d["max_abs"], abs(e.value))
    dim_rows = [{**d, "layers": sorted(d["layers"])} for d in sorted(dims.values(), key=lambda r: -r["max_abs"])]
    return {
        "has_massive": bool(massive),
        "first_layer": min(per_seq.values()) if per_seq else None,
        "first_layer_per_sequence": [per_seq.get(i) for i in range(n_sequences)],
        "dims": dim_rows,
        "positions": [{"position": p, "count": c} for p, c in sorted(Counter(e.position for e in massive).items())],
        "tokens": [{"token": t, "count": c} for t, c in Counter(e.token for e in massive).most_common()],
        "n_entries": len(massive),
    }
