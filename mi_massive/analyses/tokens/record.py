"""The record of ``mi-massive tokens`` (``tokens.json``): typed, loadable, with units per field.

>>> c = TokenClass(class_="start", n_tokens=4, n_massive=4, rate=1.0, rate_ci95=[0.51, 1.0])
>>> c.to_dict()["class"], TokenClass.from_dict(c.to_dict()) == c
('start', True)

Rates are fractions in [0, 1] with Wilson 95% intervals; effect sizes (Cohen's d, AUC) are unitless;
the word metrics are shares and cosines (unitless). JSON keys are those of the files written before
the records were typed (``class`` is a Python keyword, so the field is ``class_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record, json_field


@dataclass
class TokenClass(Record):
    """One token class (``start`` = position 0, ``delimiter``, ``other``): tokens, massive tokens (massive in
    any block) and the rate with its Wilson 95% CI (None when the class is empty)."""

    class_: str = json_field("class")
    n_tokens: int = 0
    n_massive: int = 0
    rate: float | None = None
    rate_ci95: list[float] = field(default_factory=list)


@dataclass
class TopToken(Record):
    """A massive token string: how many of its occurrences are massive (any block) and how often it occurs."""

    token: str
    n_massive: int
    n_in_corpus: int


@dataclass
class NonInitialEntry(Record):
    """A massive position > 0: sequence, position, token, first and last massive block, dims, max |h| (residual units)."""

    sequence: int
    position: int
    token: str
    layers: list[int]
    dims: list[int]
    max_abs: float


@dataclass
class WordMetrics(Record):
    """The four seed metrics of one word type (see :mod:`mi_massive.analyses.tokens.metrics`); None where undefined."""

    word: str
    group: str
    n_occurrences: int
    concentration: float | None
    asymmetry: float | None
    stability: float | None
    alignment: float | None


@dataclass
class GroupComparison(Record):
    """Group x (function words) vs group y (content words): sizes, means, medians, Welch's t (and df, absent
    when too few), Mann-Whitney U, Cohen's d with its bootstrap 95% CI, AUC = P(X > Y) + P(X = Y) / 2."""

    n_x: int
    n_y: int
    mean_x: float | None
    mean_y: float | None
    median_x: float | None
    median_y: float | None
    welch_t: float | None
    welch_p: float | None
    mw_u: float | None
    mw_p: float | None
    d: float | None
    d_ci95: list[float | None] | None
    auc: float | None
    welch_df: float | None = json_field(omit_none=True, default=None)


@dataclass
class TriggerRate(Record):
    """How often the non-initial tokens of one word group are massive: counts, rate, Wilson 95% CI."""

    n_tokens: int
    n_massive: int
    rate: float | None
    rate_ci95: list[float]


@dataclass
class WordComparison(Record):
    """Function vs content words at block ``layer`` for residual ``dim``, on ``k`` SVD components of W_out,
    each type represented by ``occurrences_per_type`` occurrences: per-type metrics, one test per metric,
    the token-level alignment test, the trigger rates and the mean cos(h, u_1) at position 0."""

    layer: int
    dim: int
    k: int
    occurrences_per_type: int
    metric_names: list[str]
    n_types: dict[str, int]
    per_word: list[WordMetrics]
    tests: dict[str, GroupComparison]
    token_level_alignment: GroupComparison
    trigger_rates: dict[str, TriggerRate]
    start_alignment: float | None


@dataclass(repr=False)
class TokensResult(Record):
    """Which tokens carry massive activations, and the function-vs-content-word comparison.

    ``classes``: per token class the counts and massive rate (:class:`TokenClass`); ``top_tokens``: the
    most frequent massive token strings; ``non_initial``: massive entries at positions > 0 (at most 200);
    ``words``: the four seed metrics per word type and the tests (:class:`WordComparison`);
    ``conclusion``: plain sentences. ``to_dataframe()``: the token classes.
    """

    provenance: dict[str, Any]
    layer: int
    classes: list[TokenClass]
    top_tokens: list[TopToken]
    non_initial: list[NonInitialEntry]
    words: WordComparison
    conclusion: list[str] = field(default_factory=list)

    _table = "classes"
