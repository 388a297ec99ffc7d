"""The record of ``mi-massive svd`` (``svd.json``): typed, loadable, with units per field.

>>> c = Component(k=0, sigma=2.0, vt_k_dim=0.5, weight=1.0)
>>> Component.from_dict(c.to_dict()) == c
True

Singular values are in the units of ``W_out`` (residual units per unit of neuron activation);
projections h . u_1 in neuron-activation units; y = mlp_out[t, dim] - b_out[dim] in residual units.
JSON keys are those of the files written before the records were typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record, json_field


@dataclass
class Component(Record):
    """Component k of W_out: sigma_k, V^T[k, dim] and its weight S_k V^T[k, dim] in column ``dim``."""

    k: int
    sigma: float
    vt_k_dim: float
    weight: float


@dataclass
class Spectrum(Record):
    """The singular spectrum of W_out oriented for ``dim`` (see :func:`mi_massive.analyses.svd.linalg.spectrum_stats`).

    ``sigma1``/``sigma2`` and their ratio; ``sigma1_sq_share`` = sigma_1^2 / sum sigma^2; ``vt0_dim`` =
    V^T[0, dim] (>= 0 by the sign convention) and its rank in |V^T[0]|; ``rank1_column_share``: share of
    ||W_out[:, dim]||^2 on component 1; ``top_components_for_dim``: components writing most into ``dim``.
    """

    sigma1: float
    sigma2: float | None
    sigma_ratio: float | None
    sigma1_sq_share: float
    vt0_dim: float
    vt0_dim_rank: int
    rank1_column_share: float
    top_components_for_dim: list[Component]
    singular_values: list[float]


@dataclass
class ClassAlignment(Record):
    """Alignment of one position class's tokens with u_1: count, mean/std of cos(h, u_1), mean/max of
    h . u_1, and how many of them are massive in ``dim``."""

    n: int
    cos_mean: float
    cos_std: float
    proj_mean: float
    proj_max: float
    n_massive: int


@dataclass
class AlignedToken(Record):
    """A token with a large cos(h, u_1): its text, position, cosine, projection h . u_1 and y."""

    token: str
    position: int
    cos: float
    proj: float
    y: float


@dataclass
class MassiveAlignment(Record):
    """Means over the massive tokens: cos(h, u_1), h . u_1 and y."""

    cos_mean: float
    proj_mean: float
    y_mean: float


@dataclass
class Alignment(Record):
    """Token alignment with u_1 per position class (``start`` = position 0, ``other``; absent when the corpus
    has none), the 15 tokens with the largest cosine, and the massive tokens' means (absent when none)."""

    top_tokens_by_cos: list[AlignedToken]
    start: ClassAlignment | None = json_field(omit_none=True, default=None)
    other: ClassAlignment | None = json_field(omit_none=True, default=None)
    massive_tokens: MassiveAlignment | None = json_field(omit_none=True, default=None)

    def by_class(self) -> dict[str, ClassAlignment]:
        """{class: alignment} of the classes present."""
        return {c: a for c, a in (("start", self.start), ("other", self.other)) if a is not None}


@dataclass
class Fit(Record):
    """OLS of y on x = h . u_1 for one position class (see :func:`mi_massive.analyses.svd.linalg.regression_report`).

    ``slope`` (residual units per unit of h . u_1), ``intercept``, ``r2`` and its bootstrap ``r2_ci95`` (None
    when there is nothing to regress); ``expected_slope`` = S_1 V^T[0, dim]; ``rank1_term_var_share``: share
    of var(y) explained by the exact rank-1 term; ``verdict``: the plain-language reading.
    """

    slope: float | None
    intercept: float | None
    r2: float | None
    r2_ci95: list[float] | None
    n: int
    n_distinct_inputs: int
    expected_slope: float
    rank1_term_var_share: float | None
    input_rank1_share: float | None
    verdict: str


@dataclass
class Points(Record):
    """At most ``max_points`` (h . u_1, y) pairs of one class, for plotting."""

    proj: list[float]
    y: list[float]


@dataclass
class Regression(Record):
    """Per position class: the fit and the plotted points; what is regressed on what."""

    fits: dict[str, Fit]
    points: dict[str, Points]
    target: str
    regressor: str


@dataclass(repr=False)
class SvdResult(Record):
    """SVD of ``W_out`` of block ``layer`` and the alignment of tokens with its top input direction u_1.

    Orientation: ``out = h @ W_out`` with ``W_out`` [d_mlp, d_model] = U diag(S) V^T; input (neuron-space)
    directions are the columns of U, output (residual) directions the rows of V^T; signs fixed so that
    V^T[k, dim] >= 0 for every k. ``spectrum`` (:class:`Spectrum`), ``alignment`` (:class:`Alignment`),
    ``regression`` (:class:`Regression`: OLS of y = mlp_out[t, dim] - b_out[dim] on h_t . u_1 per position
    class, with R^2 and a bootstrap CI, plus a plain statement when the fit is near-tautological).
    ``to_dataframe()``: the components writing most into ``dim``.
    """

    provenance: dict[str, Any]
    layer: int
    dim: int
    spectrum: Spectrum
    alignment: Alignment
    regression: Regression
    notes: list[str] = field(default_factory=list)

    _table = "top_components"

    @property
    def top_components(self) -> list[Component]:
        """The components of W_out writing most into ``dim`` (by |S_k V^T[k, dim]|)."""
        return self.spectrum.top_components_for_dim
