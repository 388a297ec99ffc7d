"""The study's typed record (``study.json``): one row per model, the depth profiles, the state of every unit.

>>> row = ModelRow(model="toy-llama", folder="toy-llama", n_layers=3, first_layer=1, has_massive=True)
>>> row.relative_first_layer
0.5
>>> StudyRecord(settings={}, models=[row], profiles=[], units=[]).to_dataframe()["model"].tolist()
['toy-llama']

``study.json`` holds no time stamps or timings (those go to ``last_run.json``), so the same units give
the same bytes whichever engine ran them and in whatever order they finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mi_massive.core.records import Record


@dataclass
class HeadShare:
    """A sink head: ``label`` (``L3H1``) and ``share``, its mean attention probability (0..1) on position 0
    from queries q >= 1 (the ``heads`` analysis' ``to_first``)."""

    label: str
    share: float


@dataclass
class ModelRow:
    """One model's line of the cross-model table. None: the analysis that gives it did not run or failed.

    ``n_params``: parameters (count); ``prepend_bos`` / ``bos_source``: the BOS choice (``auto`` = the
    tokenizer's convention); ``first_layer``: first block with a massive entry (0-based), and
    ``relative_first_layer`` = first_layer / (n_layers - 1); ``dims``: massive dims, largest first;
    ``largest``: the largest |h| of a massive entry (residual units) and ``largest_ratio`` its ratio to
    its sequence's median |h| at that block; ``positions`` / ``tokens``: the positions and tokens
    carrying most massive entries; ``ppl_zero`` / ``ppl_mean``: perplexity x original when the massive
    entries are set to zero / to their mean at their first massive block, with paired 95% bootstrap CIs
    (``*_ci95``); ``top_heads``: the three heads with the most attention on position 0; ``writer``: the
    largest term writing the attributed entry (``writer_entry`` = [layer, position, dim]) and
    ``writer_share`` its share of the entry's value.
    """

    model: str
    folder: str
    architecture: str | None = None
    n_params: int | None = None
    n_layers: int | None = None
    dtype: str | None = None
    prepend_bos: bool | None = None
    bos_source: str | None = None
    has_massive: bool | None = None
    first_layer: int | None = None
    dims: list[int] = field(default_factory=list)
    largest: float | None = None
    largest_ratio: float | None = None
    positions: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    ppl_original: float | None = None
    ppl_zero: float | None = None
    ppl_zero_ci95: list[float] | None = None
    ppl_mean: float | None = None
    ppl_mean_ci95: list[float] | None = None
    top_heads: list[HeadShare] = field(default_factory=list)
    writer: str | None = None
    writer_share: float | None = None
    writer_entry: list[int] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def relative_first_layer(self) -> float | None:
        if self.first_layer is None or not self.n_layers:
            return None
        return self.first_layer / max(self.n_layers - 1, 1)


@dataclass
class DepthProfile:
    """A model's layer-wise profile: per block output, the mean top-1 |h| and mean median |h| (residual
    units), at ``relative_depth`` = block / (n_layers - 1)."""

    model: str
    relative_depth: list[float]
    top1: list[float]
    median: list[float]


@dataclass
class UnitState:
    """A unit (``id`` = ``<model folder>/<analysis>``): ``status`` ``done``, ``n/a`` (the analysis does not apply,
    e.g. nothing massive to attribute; ``reason`` says why) or ``failed`` (with ``reason``);
    ``file``: its result, relative to the study directory."""

    id: str
    status: str
    reason: str | None = None
    file: str | None = None


@dataclass(repr=False)
class StudyRecord(Record):
    """A whole study: ``settings`` (what was asked), ``models`` (:class:`ModelRow`, in the order given),
    ``profiles`` (:class:`DepthProfile`) and ``units`` (:class:`UnitState`). ``complete``: no unit failed."""

    _table: ClassVar[str | None] = "models"

    settings: dict[str, Any]
    models: list[ModelRow]
    profiles: list[DepthProfile]
    units: list[UnitState]

    @property
    def complete(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[UnitState]:
        return [u for u in self.units if u.status == "failed"]
