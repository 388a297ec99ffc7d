"""The record of ``mi-massive compare-variants`` (``compare.json``): one :class:`VariantReport` per variant.

>>> v = VariantReport(name="baseline", spec={}, path=None, eval_loss=5.0, eval_ppl=148.4, train={"steps": 3},
...     top1_per_layer=[3.0, 2.0], median_per_layer=[0.5, 0.4], n_massive=0, massive_dims=[],
...     massive_positions={}, max_top1=3.0, attn_first_token=[0.2, 0.3], attn_bias_slot=[])
>>> c = VariantComparison(provenance={"base": "toy-llama"}, reports=[v], figure=[], seconds={"total": 1.5})
>>> VariantComparison.from_dict(c.to_dict()) == c
True
>>> c.to_dataframe()[["name", "eval_loss", "n_massive"]].values.tolist()
[['baseline', 5.0, 0]]

Losses are in nats/token, perplexity = exp(loss); activations |h| in residual units; attention mass
is a fraction of each query's attention (0..1). Wall times live in one block, ``seconds``, so two runs
with the same seed write the same JSON apart from it and ``provenance.created_utc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record, by_name, json_field


@dataclass
class VariantReport(Record):
    """One column of the comparison (all losses in nats/token; activations in residual units).

    ``spec``: the variant's :class:`~mi_massive.core.variants.VariantSpec` as data; ``path``: where it is
    saved; ``train``: the training log without the per-step losses; ``top1_per_layer`` /
    ``median_per_layer``: mean top-1 and median |h| of each block output over the scanned windows;
    ``n_massive``/``massive_dims``/``massive_positions``: detected massive entries (per position: count);
    ``max_top1``: the largest top-1 |h| of any block; ``attn_first_token`` / ``attn_bias_slot``: mean
    attention of queries q >= 1 to position 0 / to the KV-bias slot, per block (empty without a slot);
    ``bridge_vs_hf_max_abs_diff``: max |logit difference| between the bridge and the patched HF model.
    """

    name: str
    spec: dict[str, Any]
    path: str | None
    eval_loss: float
    eval_ppl: float
    train: dict[str, Any]
    top1_per_layer: list[float]
    median_per_layer: list[float]
    n_massive: int
    massive_dims: list[int]
    massive_positions: dict[str, int]
    max_top1: float
    attn_first_token: list[float]
    attn_bias_slot: list[float]
    seconds_eval: float | None = json_field(omit_none=True, default=None)  # files before the seconds block
    bridge_vs_hf_max_abs_diff: float = 0.0
    scan_summary: dict[str, Any] = field(default_factory=dict)


@dataclass(repr=False)
class VariantComparison(Record):
    """Every variant trained with the same budget and seed, side by side.

    ``provenance``: base, data, streams, training config, toy config, versions, time; ``reports``: one
    :class:`VariantReport` per variant (``to_dataframe()``: one row per variant); ``figure``: the paths of
    the comparison figure (HTML, PNG); ``seconds``: every wall time of the run (``total``; per variant
    ``train``, ``eval`` and whether it was ``reused``), the only part that differs between same-seed runs.
    """

    provenance: dict[str, Any]
    reports: list[VariantReport]
    figure: list[str] = field(default_factory=list)
    seconds: dict[str, Any] = field(default_factory=dict)

    _table = "reports"

    def report(self, name: str) -> VariantReport:
        """The report of the variant called ``name``."""
        return by_name(self.reports, name, "variant")
