"""The record of the attention views of one text (``attention.json``).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> res = mm.attention(model, "The cat sat on the mat.", prepend_bos=True, layers=[1])
>>> res.sink_positions, tuple(res.sink_share.shape)
([0], (3, 4))
>>> list(res.to_dataframe().columns)
['layer', 'head', 'sink_share']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from mi_massive.core.io import write_json
from mi_massive.core.records import Record
from mi_massive.errors import MiMassiveError


def _tensor(values: Any) -> torch.Tensor:
    """A float tensor from JSON lists (``null`` -> NaN, ``"inf"``/``"-inf"`` -> +-inf)."""
    def clean(v):
        if isinstance(v, list):
            return [clean(x) for x in v]
        if v is None:
            return math.nan
        return float(v)
    return torch.tensor(clean(values), dtype=torch.float32)


@dataclass(repr=False)
class AttentionResult(Record):
    """Attention views of one sequence (``text``, as given or decoded). Layers are 0-based block indices; positions index ``str_tokens``.

    ``patterns[L]``: probabilities [len(heads), q, k] of block L (selected heads).
    ``logits_mean[L]``: pre-softmax logits q.k/sqrt(d_head) averaged over the selected heads [q, k];
    entries with k > q (masked) are NaN.
    ``value_norms``: [n_layers, pos], the L2 norm of v_t (``attn.hook_v``) averaged over KV heads
    (units of the value vectors).
    ``sink_share``: [n_layers, n_heads], mean over queries q >= 1 of sum_{k in sink_positions} A[q, k]
    (a fraction in [0, 1]; all heads, not only the selected ones).
    ``massive_positions`` / ``massive_dims``: found by the scan of this text (empty if none).
    ``sink_positions``: the key positions counted as sinks (the massive positions, else [0]);
    ``sink_label``: the same in words. The JSON also holds ``top_sink_heads`` (derived, see
    :meth:`top_sink_heads`). ``to_dataframe()``: one row per (layer, head) with its sink share.
    """

    _table: ClassVar[str | None] = "sink_share"

    provenance: dict[str, Any]
    model_name: str
    text: str
    tokens: list[int]
    str_tokens: list[str]
    layers: list[int]
    heads: list[int]
    all_layers: list[int]
    patterns: dict[int, torch.Tensor]
    logits_mean: dict[int, torch.Tensor]
    value_norms: torch.Tensor
    sink_share: torch.Tensor
    massive_positions: list[int]
    massive_dims: list[int]
    sink_positions: list[int]
    sink_label: str

    def describe(self) -> str:
        """One sentence: what the page shows and which positions count as sinks."""
        n = len(self.tokens)
        dims = ", ".join(map(str, self.massive_dims)) or "none"
        return (f"{n} tokens; blocks shown: {', '.join(map(str, self.layers))}; heads: "
                f"{', '.join(map(str, self.heads))}. Massive dims in this text: {dims}. "
                f"Sink positions for the attention share: {self.sink_label}.")

    def top_sink_heads(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` (block, head) pairs with the largest sink share (``share``: fraction 0..1)."""
        flat = self.sink_share.flatten()
        idx = flat.topk(min(k, flat.numel())).indices.tolist()
        n_heads = self.sink_share.shape[1]
        return [{"layer": self.all_layers[i // n_heads], "head": i % n_heads, "share": float(flat[i])} for i in idx]

    def to_dataframe(self):
        """One row per (layer, head): ``layer``, ``head``, ``sink_share`` (fraction of attention, 0..1)."""
        import pandas as pd

        share = self.sink_share.tolist()
        return pd.DataFrame([{"layer": layer, "head": h, "sink_share": v}
                             for layer, row in zip(self.all_layers, share) for h, v in enumerate(row)])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (tensors stay tensors here; ``save`` turns them into nested lists)."""
        return {
            "provenance": self.provenance, "model_name": self.model_name, "text": self.text, "tokens": self.tokens,
            "str_tokens": self.str_tokens, "layers": self.layers, "heads": self.heads, "all_layers": self.all_layers,
            "massive_positions": self.massive_positions, "massive_dims": self.massive_dims,
            "sink_positions": self.sink_positions, "sink_label": self.sink_label,
            "sink_share": self.sink_share, "value_norms": self.value_norms,
            "top_sink_heads": self.top_sink_heads(),
            "logits_mean": {str(k): v for k, v in self.logits_mean.items()},
            "patterns": {str(k): v for k, v in self.patterns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttentionResult":
        """Rebuild from the JSON form (lists become float tensors; ``top_sink_heads`` is recomputed)."""
        if not isinstance(data, dict):
            raise MiMassiveError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        names = [f for f in cls.__dataclass_fields__ if f != "_table"]
        missing = [n for n in names if n not in data]
        if missing:
            raise MiMassiveError(f"not a {cls.__name__} file: missing field(s) {', '.join(missing)}")
        kw = {n: data[n] for n in names}
        for key in ("patterns", "logits_mean"):
            kw[key] = {int(k): _tensor(v) for k, v in data[key].items()}
        kw["value_norms"], kw["sink_share"] = _tensor(data["value_norms"]), _tensor(data["sink_share"])
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        """Write ``attention.json`` atomically (the :meth:`to_dict` form)."""
        return write_json(path, self.to_dict())
