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

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from mi_massive.core.names import EMBED_LAYER
from mi_massive.core.records import Record

__all__ = ["EMBED_LAYER", "MAX_MASSIVE_ENTRIES", "MAX_NEAR_ENTRIES", "DimSummary", "EntryTally", "LargestEntries",
           "LayerPerSequence", "LayerRecord", "MassiveEntry", "PositionCount", "ScanResult", "ScanSummary",
           "TokenCount"]

MAX_MASSIVE_ENTRIES = 10_000  # massive entries kept in the JSON: the largest |h| (counts always cover all of them)
MAX_NEAR_ENTRIES = 2_000  # near-massive entries kept in the JSON: the largest |h| (the total count is recorded)


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
    """Where the massive entries are (built by :meth:`EntryTally.summary`).

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
    """A whole scan: the statistics of every hook (``layers``), the ``massive`` and ``near_massive`` entries,
    the total near-massive count and the :class:`ScanSummary`.

    What is stored is capped, what is counted is not: ``massive`` keeps the :data:`MAX_MASSIVE_ENTRIES`
    (10,000) and ``near_massive`` the :data:`MAX_NEAR_ENTRIES` (2,000) largest |h| (ties: earlier hook,
    sequence, position, dim), each listed in scan order (hook, sequence, position, dim) -- the same whatever
    ``batch_size``; ``summary.n_entries``, ``summary`` counts, ``layers[].n_massive`` / ``massive_dims`` and
    ``near_massive_total`` count every entry (thresholds of 0/0 flag every coordinate).

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


def _lexsort(order: np.ndarray) -> np.ndarray:
    """Row indices sorting the key columns of ``order`` [n, k] lexicographically (first column first)."""
    return np.lexsort(tuple(order[:, j] for j in reversed(range(order.shape[1]))))


def _first_by_group(groups: np.ndarray, order: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Distinct ``groups`` and, for each, the smallest key row of ``order`` (as a tuple) among its entries
    (``idx = _lexsort(order)``, sorted once by the caller for all its groupings)."""
    uniq, first = np.unique(groups[idx], return_index=True)
    return uniq, [tuple(int(x) for x in order[idx[i]]) for i in first]


class EntryTally:
    """Exact counts of flagged entries, added batch by batch as arrays (no per-entry Python objects):
    entries per dim (with their layers, largest |h| and first appearance), per position, per token, and the
    first block layer per sequence -- everything :class:`ScanSummary` reports, independent of how the
    corpus was batched. ``order`` gives each entry's sort key (columns compared left to right); ties in
    the summary's orderings go to the smaller key.
    """

    def __init__(self) -> None:
        self.n = 0
        self.dims: dict[int, list] = {}  # dim -> [count, set(layers), max_abs, first key]
        self.positions: dict[int, int] = {}
        self.tokens: dict[int, list] = {}  # token id -> [count, first key]
        self.first_layer: dict[int, int] = {}

    def add(self, *, layers: np.ndarray, sequences: np.ndarray, positions: np.ndarray, dims: np.ndarray,
            values: np.ndarray, token_ids: np.ndarray, order: np.ndarray) -> None:
        n = len(values)
        if n == 0:
            return
        self.n += n
        absval = np.abs(values.astype(np.float64))
        uniq, counts = np.unique(dims, return_counts=True)
        inverse = np.searchsorted(uniq, dims)
        max_abs = np.zeros(len(uniq))
        np.maximum.at(max_abs, inverse, absval)
        by_key = _lexsort(order)
        _, firsts = _first_by_group(dims, order, by_key)
        for j, dim in enumerate(uniq.tolist()):
            row = self.dims.setdefault(dim, [0, set(), 0.0, firsts[j]])
            row[0] += int(counts[j])
            row[2] = max(row[2], float(max_abs[j]))
            row[3] = min(row[3], firsts[j])
        for dim, layer in np.unique(np.stack([dims, layers], axis=1), axis=0).tolist():  # distinct (dim, layer)
            self.dims[dim][1].add(layer)
        for pos, count in zip(*np.unique(positions, return_counts=True)):
            self.positions[int(pos)] = self.positions.get(int(pos), 0) + int(count)
        tok_uniq, tok_counts = np.unique(token_ids, return_counts=True)
        _, tok_firsts = _first_by_group(token_ids, order, by_key)
        for tid, count, key in zip(tok_uniq.tolist(), tok_counts.tolist(), tok_firsts):
            row = self.tokens.setdefault(tid, [0, key])
            row[0] += count
            row[1] = min(row[1], key)
        blocks = layers != EMBED_LAYER
        if blocks.any():
            seqs, lays = sequences[blocks], layers[blocks]
            for seq in np.unique(seqs).tolist():
                low = int(lays[seqs == seq].min())
                self.first_layer[seq] = min(self.first_layer.get(seq, low), low)

    def summary(self, n_sequences: int, token_string: Callable[[int], str]) -> ScanSummary:
        """The :class:`ScanSummary` of everything added (``token_string``: token id -> its string)."""
        dim_rows = [DimSummary(dim=d, count=r[0], layers=sorted(r[1]), max_abs=r[2])
                    for d, r in sorted(self.dims.items(), key=lambda kv: (-kv[1][2], kv[1][3]))]
        by_string: dict[str, list] = {}
        for tid, (count, key) in self.tokens.items():
            row = by_string.setdefault(token_string(tid), [0, key])
            row[0] += count
            row[1] = min(row[1], key)
        tokens = [TokenCount(t, r[0]) for t, r in sorted(by_string.items(), key=lambda kv: (-kv[1][0], kv[1][1]))]
        return ScanSummary(
            has_massive=self.n > 0,
            first_layer=min(self.first_layer.values()) if self.first_layer else None,
            first_layer_per_sequence=[self.first_layer.get(i) for i in range(n_sequences)],
            dims=dim_rows,
            positions=[PositionCount(p, c) for p, c in sorted(self.positions.items())],
            tokens=tokens,
            n_entries=self.n,
        )


class LargestEntries:
    """The ``keep`` entries of largest |value| seen so far, added batch by batch as arrays.

    Ties in |value| go to the smaller key (``hook``, ``sequence``, ``position``, ``dim``), so what is kept does
    not depend on the batching; :meth:`rows` lists the kept entries in that key order.

    >>> big = LargestEntries(2)
    >>> big.add(hooks=np.array([0, 0, 0]), sequences=np.array([0, 0, 1]), positions=np.array([0, 3, 0]),
    ...         dims=np.array([5, 5, 5]), values=np.array([-9.0, 2.0, 9.0], dtype=np.float32))
    >>> big.add(hooks=np.array([1]), sequences=np.array([0]), positions=np.array([0]), dims=np.array([1]),
    ...         values=np.array([4.0], dtype=np.float32))
    >>> [(r[0], r[1], r[2], r[3], r[4]) for r in big.rows()]
    [(0, 0, 0, 5, -9.0), (0, 1, 0, 5, 9.0)]
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.cols: list[np.ndarray] = [np.zeros(0, np.int64)] * 4 + [np.zeros(0, np.float32)]

    def add(self, *, hooks: np.ndarray, sequences: np.ndarray, positions: np.ndarray, dims: np.ndarray,
            values: np.ndarray) -> None:
        """Add entries (1-D arrays of equal length, in any order): hook index, sequence, position, dim, value."""
        if len(values) == 0 or self.keep <= 0:
            return
        new = [hooks.astype(np.int64), sequences.astype(np.int64), positions.astype(np.int64),
               dims.astype(np.int64), values.astype(np.float32)]
        cols = [np.concatenate([a, b]) for a, b in zip(self.cols, new)]
        n = len(cols[4])
        if n > self.keep:
            absval = np.abs(cols[4])
            cut = np.partition(absval, n - self.keep)[n - self.keep]  # the keep-th largest |value|
            cand = np.flatnonzero(absval >= cut)  # every entry that can make the cut (ties included)
            idx = np.lexsort((cols[3][cand], cols[2][cand], cols[1][cand], cols[0][cand], -absval[cand]))
            chosen = cand[idx[: self.keep]]
            cols = [c[chosen] for c in cols]
        self.cols = cols

    def rows(self) -> list[tuple[int, int, int, int, float]]:
        """(hook, sequence, position, dim, value) of the kept entries, in key order."""
        h, s, p, d, v = self.cols
        idx = np.lexsort((d, p, s, h))
        return list(zip(h[idx].tolist(), s[idx].tolist(), p[idx].tolist(), d[idx].tolist(), v[idx].tolist()))
