"""The record of activation patching (``patching.json``): one grid per component.

>>> rec = PatchingResult(provenance={}, metric="loss", clean=1.0, corrupted=3.0, clean_tokens=["a", "b"],
...                      corrupted_tokens=["a", "c"], results={"resid_pre": [[3.0, 1.0]]},
...                      normalised={"resid_pre": [[0.0, 1.0]]}, backend="native")
>>> rec.to_dataframe().values.tolist()
[['resid_pre', 0, 0, 'position', 3.0, 0.0], ['resid_pre', 0, 1, 'position', 1.0, 1.0]]

Layers, positions and heads are 0-based; values are in the metric's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mi_massive.core.records import Record


@dataclass(repr=False)
class PatchingResult(Record):
    """Activation patching clean -> corrupted.

    ``results[component]`` is a [layer][pos] grid (resid_pre, attn_out, mlp_out) or [layer][head]
    (head), each cell the metric of the corrupted run with that one activation replaced by the
    clean one. ``clean`` / ``corrupted``: the unpatched metric values. ``normalised`` grids are
    (patched - corrupted) / (clean - corrupted): 1 = fully restored (NaN when clean == corrupted).
    ``metric``: the metric string (``custom:<name>`` for a callable); ``clean_tokens`` /
    ``corrupted_tokens``: the token strings; ``backend``: ``native`` or ``transformer_lens``.
    ``to_dataframe()``: one row per cell (component, layer, index, index_kind, value, normalised).
    """

    _table: ClassVar[str | None] = "results"

    provenance: dict[str, Any]
    metric: str
    clean: float
    corrupted: float
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    results: dict[str, list[list[float]]]
    normalised: dict[str, list[list[float]]]
    backend: str

    def top_cells(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` cells with the largest |patched - corrupted|, largest first.

        >>> rec = PatchingResult(provenance={}, metric="loss", clean=1.0, corrupted=3.0, clean_tokens=["a", "b"],
        ...                      corrupted_tokens=["a", "c"], results={"resid_pre": [[3.0, 1.0]]},
        ...                      normalised={"resid_pre": [[0.0, 1.0]]}, backend="native")
        >>> [(c["component"], c["where"], c["normalised"]) for c in rec.top_cells(1)]
        [('resid_pre', "pos 1 'c' (clean 'b')", 1.0)]

        Each row: ``component``, ``layer``, ``index`` (position or head), ``where`` (a readable label
        with the corrupted token, and the clean one where they differ), ``value`` (patched metric),
        ``delta`` (patched - corrupted) and ``normalised`` ((patched - corrupted) / (clean - corrupted)).
        """
        rows = []
        for component, grid in self.results.items():
            norm = self.normalised.get(component, [])
            for layer, row in enumerate(grid):
                for index, value in enumerate(row):
                    if component == "head":
                        where = f"head {index}"
                    else:
                        tok, clean_tok = self.corrupted_tokens[index], self.clean_tokens[index]
                        where = f"pos {index} {tok!r}" + (f" (clean {clean_tok!r})" if clean_tok != tok else "")
                    n = norm[layer][index] if layer < len(norm) and index < len(norm[layer]) else None
                    rows.append({"component": component, "layer": layer, "index": index, "where": where,
                                 "value": value, "delta": value - self.corrupted,
                                 "normalised": float("nan") if n is None else n})
        rows.sort(key=lambda r: -abs(r["delta"]) if r["delta"] == r["delta"] else 0.0)
        return rows[:k]

    def to_dataframe(self):
        """One row per grid cell: ``component``, ``layer``, ``index`` (the position, or the head for
        ``head``), ``index_kind`` (``position`` / ``head``), ``value`` (the patched metric) and
        ``normalised`` (1 = clean restored, 0 = corrupted)."""
        import pandas as pd

        rows = []
        for component, grid in self.results.items():
            kind = "head" if component == "head" else "position"
            norm = self.normalised.get(component, [])
            for layer, row in enumerate(grid):
                for index, value in enumerate(row):
                    n = norm[layer][index] if layer < len(norm) and index < len(norm[layer]) else None
                    rows.append({"component": component, "layer": layer, "index": index, "index_kind": kind,
                                 "value": value, "normalised": float("nan") if n is None else n})
        return pd.DataFrame(rows, columns=["component", "layer", "index", "index_kind", "value", "normalised"])
