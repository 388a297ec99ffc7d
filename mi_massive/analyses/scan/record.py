"""Typed records of a massive-activation scan and their JSON form (``scan.json``).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> result = mm.scan(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), progress=False)
>>> s = result.summary
>>> s.first_layer, s.dims[0].dim, round(s.dims[0].max_abs)
(1, 5, 3000)
>>> list(result.to_dataframe().columns)[:4]
['layer', 'hook', 'label', 'top1']

The JSON contract (read by other tools): top-level ``provenance``, ``tokens``, ``str_tokens``,
``layers`` (one entry per hook), ``massive`` and ``near_massive`` (entries), ``summary``.
All values are |h| in residual-stream units unless a field says ``signed``. Layers are 0-based
block indices; the embeddings are layer -1 (:data:`~mi_massive.core.names.EMBED_LAYER`). A scan of
other hooks (``scan(..., hooks=...)``) has the same fields in that hook's own units: ``dim`` is then
the hook's feature index (d_mlp for ``mlp.hook_post``, ``head * d_head + i`` for ``attn.hook_q/k/v``),
the final norm (``ln_final``) is layer ``n_layers``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mi_massive.core.names import EMBED_LAYER
from mi_massive.core.records import Record

__all__ = ["EMBED_LAYER", "DimSummary", "LayerPerSequence", "LayerRecord", "MassiveEntry", "PositionCount",
           "ScanResult", "ScanSummary", "TokenCount", "summarize_entries"]


class ItemAccess:
    """Compatibility shim: ``rec["name"]`` and ``rec.get("name")`` read the attribute ``name``.

    These parts of a scan were plain dicts before they became dataclasses; code written for the dict
    form (``summary["dims"][0]["dim"]``) keeps working. New code should use attributes.
    """

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__  # type: ignore[attr-defined]


@dataclass
class LayerPerSequence(ItemAccess):
    """The raw per-sequence values of one hook (one row per sequence, in corpus order).

    ``top_values``: the top-k |h| of the sequence (k floats, descending); ``top_positions`` /
    ``top_dims``: where they are (token position, residual dim); ``median``: median |h| over the real
    tokens; ``ratio``: top-1 / median (dimensionless).
    """

    top_values: list[list[float]] = field(default_factory=list)
    top_positions: list[list[int]] = field(default_factory=list)
    top_dims: list[list[int]] = field(default_factory=list)
    median: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)


@dataclass
class LayerRecord:
    """Statistics of one hook (``hook``; ``label`` such as ``"block 2"`` or ``"block 2 mlp_out"``) over the corpus.

    ``top_values``: the mean over sequences of the per-sequence top-k |h| (k floats, descending);
    ``top_values_std`` / ``top_values_ci95``: their std and 95% t-interval over sequences.
    ``median``: mean over sequences of the per-sequence median |h| (pads excluded).
    ``ratio``: mean over sequences of top-1 / median. ``top1_max``: max over sequences of top-1.
    ``dim_max``: per dim, the max over sequences and positions of |h| (d_model floats; one per feature
    of the hook otherwise).
    ``per_sequence``: the raw per-sequence values (:class:`LayerPerSequence`).
    ``n_massive``: massive entries at this hook; ``massive_dims``: their distinct dims.
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
    per_sequence: LayerPerSequence
    n_massive: int = 0
    massive_dims: list[int] = field(default_factory=list)


@dataclass
class MassiveEntry:
    """One flagged coordinate: ``value`` is the signed h[layer][sequence, position, dim] (residual units).

    ``token`` / ``token_id``: the token at that position; ``ratio_to_median``: |value| / the
    sequence's median |h| at that hook (dimensionless).
    """

    layer: int
    hook: str
    sequence: int
    position: int
    dim: int
    value: float
    token: str
    token_id: int
    ratio_to_median: float


@dataclass
class DimSummary(ItemAccess):
    """One residual dim carrying massive entries: ``count`` entries, at ``layers`` (sorted block
    indices, -1 = embeddings), largest |h| ``max_abs`` (residual units)."""

    dim: int
    count: int
    layers: list[int]
    max_abs: float


@dataclass
class PositionCount(ItemAccess):
    """Number of massive entries (all layers and sequences) at token ``position``."""

    position: int
    count: int


@dataclass
class TokenCount(ItemAccess):
    """Number of massive entries (all layers and sequences) on the token string ``token``."""

    token: str
    count: int


@dataclass
class ScanSummary(ItemAccess):
    """Where the massive entries are (built by :func:`summarize_entries`).

    ``has_massive``: any massive entry at all; ``first_layer``: smallest block index with a massive
    entry in any sequence (None if none; embeddings not counted); ``first_layer_per_sequence``: the
    same per sequence; ``dims``: per dim (largest |h| first) a :class:`DimSummary`;
    ``positions`` / ``tokens``: entry counts per position (ascending) / token (most common first);
    ``n_entries``: number of massive entries. Dict-style reads (``summary["dims"]``) still work.
    """

    has_massive: bool
    first_layer: int | None
    first_layer_per_sequence: list[int | None]
    dims: list[DimSummary]
    positions: list[PositionCount]
    tokens: list[TokenCount]
    n_entries: int


@dataclass(repr=False)
class ScanResult(Record):
    """A whole scan: the statistics of every hook (``layers``), the ``massive`` and (at most 2,000)
    ``near_massive`` entries, the total near-massive count and the :class:`ScanSummary`.

    ``tokens`` / ``str_tokens``: the corpus ids and their strings, one row per sequence.
    ``to_dataframe()``: one row per hook (layer, top-1, median, ratio, ...).
    """

    _table: ClassVar[str | None] = "layers"

    provenance: dict[str, Any]
    tokens: list[list[int]]
    str_tokens: list[list[str]]
    layers: list[LayerRecord]
    massive: list[MassiveEntry]
    near_massive: list[MassiveEntry]
    near_massive_total: int
    summary: ScanSummary

    def layer(self, layer: int, hook: str | None = None) -> LayerRecord:
        """The record of a layer index (``-1`` = embeddings)."""
        for rec in self.layers:
            if rec.layer == layer and (hook is None or rec.hook == hook):
                return rec
        raise KeyError(f"no layer {layer} in this scan")

    @property
    def block_layers(self) -> list[LayerRecord]:
        """Records of the block outputs (``hook_resid_post``), in layer order."""
        return [r for r in self.layers if r.layer != EMBED_LAYER and r.hook.endswith("hook_resid_post")]

    def hook_kinds(self) -> dict[str, list[LayerRecord]]:
        """The records grouped by hook kind (:func:`~mi_massive.core.names.hook_kind`), in scan order:
        ``resid_post`` (embeddings and block outputs), ``mlp_out``, ``attn.hook_q``, ..."""
        from mi_massive.core.names import hook_kind

        groups: dict[str, list[LayerRecord]] = {}
        for rec in self.layers:
            groups.setdefault(hook_kind(rec.hook), []).append(rec)
        return groups

    def massive_coordinates(self, layer: int | None = None) -> list[tuple[int, int, int]]:
        """Distinct (layer, position, dim) of massive entries, optionally of one layer."""
        coords = {(e.layer, e.position, e.dim) for e in self.massive if layer is None or e.layer == layer}
        return sorted(coords)

    def to_dataframe(self):
        """One row per hook: ``layer``, ``hook``, ``label``, ``top1`` (mean top-1 |h|), ``top1_max``,
        ``median`` (mean median |h|), ``ratio`` (mean top-1/median), ``n_massive``, ``massive_dims``."""
        import pandas as pd

        return pd.DataFrame([{"layer": r.layer, "hook": r.hook, "label": r.label, "top1": r.top_values[0],
                              "top1_max": r.top1_max, "median": r.median, "ratio": r.ratio,
                              "n_massive": r.n_massive, "massive_dims": r.massive_dims} for r in self.layers])

    def massive_dataframe(self):
        """The massive entries, one row each (the fields of :class:`MassiveEntry`)."""
        import dataclasses

        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(e) for e in self.massive],
                            columns=[f.name for f in dataclasses.fields(MassiveEntry)])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanResult":
        if isinstance(data, dict) and "near_massive_total" not in data:
            data = {**data}
            data["near_massive_total"] = len(data.get("near_massive", []))  # files from before the count
        return super().from_dict(data)


def summarize_entries(massive: list[MassiveEntry], n_sequences: int) -> ScanSummary:
    """Which dims, positions and tokens carry massive entries, and where they first appear (see
    :class:`ScanSummary`)."""
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
    dim_rows = [DimSummary(dim=d["dim"], count=d["count"], layers=sorted(d["layers"]), max_abs=d["max_abs"])
                for d in sorted(dims.values(), key=lambda r: -r["max_abs"])]
    return ScanSummary(
        has_massive=bool(massive),
        first_layer=min(per_seq.values()) if per_seq else None,
        first_layer_per_sequence=[per_seq.get(i) for i in range(n_sequences)],
        dims=dim_rows,
        positions=[PositionCount(p, c) for p, c in sorted(Counter(e.position for e in massive).items())],
        tokens=[TokenCount(t, c) for t, c in Counter(e.token for e in massive).most_common()],
        n_entries=len(massive),
    )
