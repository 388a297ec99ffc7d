"""The record of ``mi-massive intervene`` (``intervene.json``): typed, loadable, with units per field.

>>> row = PplRow(condition="original", variant="-", ppl=260.0, ci95=[255.0, 265.0], ratio=1.0,
...              ratio_ci95=[1.0, 1.0])
>>> PplRow.from_dict(row.to_dict()) == row
True

Perplexities are exp(nats per token); NLL sums are in nats; residual values |h| in the model's own
residual units. JSON keys are those of the files written before the records were typed (``class``
is a Python keyword, so the field is ``class_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record, by_name, json_field


@dataclass
class CalibrationMean(Record):
    """Signed mean of h_layer[t, dim] (residual units) over ``n`` calibration massive positions of one class."""

    layer: int
    class_: str = json_field("class")
    dim: int = 0
    mean: float = 0.0
    n: int = 0


@dataclass
class Calibration(Record):
    """Where the means come from: the calibration corpus (disjoint from the evaluation chunks), its first
    massive block and dims, the last block where these dims are massive, near-massive dims at the first
    block, the means, the (layer, dim) pairs that borrowed the other class's mean, the control dims per
    seed and the size of the ordinary-dim pool they were drawn from."""

    corpus: dict[str, Any]
    first_layer: int
    dims: list[int]
    last_massive_layer: int
    near_massive_dims_at_first_layer: list[int]
    means: list[CalibrationMean]
    missing_means: list[str]
    control_dims: dict[str, list[int]]
    ordinary_pool_size: int


@dataclass
class Evaluation(Record):
    """The evaluation chunks: corpus, counts of massive positions (start = position 0, other), chunks
    without any, each chunk's massive positions at the first massive block (``positions``: chunk index as
    a string -> positions) and the blocks of the regeneration profiles."""

    corpus: dict[str, Any]
    n_chunks: int
    n_massive_positions: int
    n_start_positions: int
    n_other_positions: int
    chunks_without_massive: int
    positions: dict[str, list[int]]
    regeneration_layers: list[int]


@dataclass
class Perplexity(Record):
    """Perplexity exp(mean NLL) with its percentile-bootstrap 95% CI over chunks, and the counts behind it."""

    ppl: float
    ci95: list[float]
    n_chunks: int
    n_tokens: int


@dataclass
class Profile(Record):
    """Mean |h| (residual units) at the edited entries per block of ``regeneration_layers`` (None: no entry):
    ``pre`` = what the block computed (resid_mid + mlp_out; in a parallel block resid_pre + attn_out + mlp_out)
    before any edit there, ``post`` = what the next block reads."""

    pre: list[float | None]
    post: list[float | None]


@dataclass
class Regeneration(Profile):
    """:class:`Profile` of one position class over all massive dims, and per dim (``per_dim``: dim as a string)."""

    per_dim: dict[str, Profile] = field(default_factory=dict)


@dataclass
class InterventionRun(Record):
    """One condition over the evaluation chunks.

    ``mode``: none / zero / mean; ``variant``: ``one`` (first massive block only), ``every`` (every massive
    block) or ``-``; ``layers``/``dims``: what was edited; ``nll_sums`` (nats) and ``counts`` (scored tokens)
    per chunk; ``ppl``; ``regeneration`` per position class; ``n_edited``: entries edited;
    ``ratio_to_original``: [PPL ratio, 95% CI low, high] (paired bootstrap over chunks).
    """

    name: str
    mode: str
    variant: str
    layers: list[int]
    dims: list[int]
    ppl: Perplexity
    nll_sums: list[float]
    counts: list[int]
    regeneration: dict[str, Regeneration]
    n_edited: int
    ratio_to_original: list[float] = field(default_factory=list)


@dataclass
class PplRow(Record):
    """One row of the Sun et al. Table-3-style table: perplexity [95% CI] and its ratio to the original [95% CI]."""

    condition: str
    variant: str
    ppl: float
    ci95: list[float]
    ratio: float
    ratio_ci95: list[float]


@dataclass
class InterventionTarget(Record):
    """One edited massive dim: ``dim`` at block ``layer`` (0-based; its own first massive block with
    ``targets="each"``), through ``last_layer`` in the "every layer" variant, at ``positions`` (evaluation chunk
    index as a string -> token positions, each chunk's own massive positions at ``layer`` in the clean run);
    ``n_positions`` in all."""

    dim: int
    layer: int
    last_layer: int
    positions: dict[str, list[int]]
    n_positions: int


@dataclass(repr=False)
class InterventionResult(Record):
    """Perplexity under Sun/Owen-style interventions on the massive dims (one layer and every layer).

    ``targets``: what was edited, one :class:`InterventionTarget` (dim, layer, positions) per massive dim --
    by default every massive dim at its own first massive block, or (``targets="earliest"``) only the dims of
    the first one. ``first_layer`` (0-based): the earliest target block; ``dims``: all target dims;
    ``edited_layers_all``: the blocks of the "every layer" variant. ``runs``: one :class:`InterventionRun` per condition; ``table``: one
    :class:`PplRow` per condition (also ``to_dataframe()``); ``calibration`` (:class:`Calibration`) and
    ``evaluation`` (:class:`Evaluation`): the two disjoint corpora and what was found in them.
    """

    provenance: dict[str, Any]
    first_layer: int
    dims: list[int]
    edited_layers_all: list[int]
    calibration: Calibration
    evaluation: Evaluation
    runs: list[InterventionRun]
    table: list[PplRow]
    notes: list[str] = field(default_factory=list)
    targets: list[InterventionTarget] = field(default_factory=list)

    _table = "table"

    def run(self, name: str) -> InterventionRun:
        """The run called ``name`` (e.g. ``"original"``, ``"zero (one layer)"``)."""
        return by_name(self.runs, name, "run")


@dataclass
class VisionRun(Record):
    """One condition of a vision intervention: the metric per image (``per_image``), its mean and 95% bootstrap CI
    over images; ``agreement``: share of images whose top class is unchanged (classifier heads only, else None);
    ``dims``: the dims zeroed / set to their mean (control: random ordinary dims); ``n_edited``: entries edited."""

    name: str
    mode: str
    dims: list[int]
    mean: float
    ci95: list[float]
    per_image: list[float]
    agreement: float | None
    n_edited: int


@dataclass(repr=False)
class VisionInterventionResult(Record):
    """Massive entries of a vision transformer set to zero / their calibration mean at their first massive block.

    ``metric``: ``kl`` (a classifier head: KL(p_original || p_edited) of the class distribution, nats per image) or
    ``rep_change`` (a bare encoder: ||z_edited - z|| / ||z|| of the final normalised CLS representation z, a
    proxy for the loss change: there is no label to score). ``metric_note`` says which and why. ``targets``:
    what was edited (dim, block, image index -> positions); ``positions_kind``: how many edited positions are
    the CLS token, registers and patches. ``runs``: original (0 by definition), zero, mean and the controls.
    """

    provenance: dict[str, Any]
    metric: str
    metric_note: str
    targets: list[InterventionTarget]
    positions_kind: dict[str, int]
    runs: list[VisionRun]
    notes: list[str] = field(default_factory=list)

    _table = "runs"

    def run(self, name: str) -> VisionRun:
        """The run called ``name`` (``"original"``, ``"zero"``, ``"mean"``, ``"control 0"``, ...)."""
        return by_name(self.runs, name, "run")
