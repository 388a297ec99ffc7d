"""The record of ``mi-massive mlp`` (``mlp.json``): typed, loadable, with units per field.

>>> r = MlpResult.from_dict({"provenance": {}, "layer": 1, "dim": 5, "gated": True, "massive_tokens": [],
...     "checkpoints": [], "contributions": {"n_massive_tokens": 1, "n_ordinary_tokens": 0,
...     "massive_total_mean": 3000.0, "massive_positive_mean": 3000.0, "massive_negative_mean": 0.0,
...     "ordinary_total_mean": None, "ordinary_total_max_abs": None, "n_neurons_50": 1, "n_neurons_90": 1,
...     "n_neurons_50_range": [1, 1], "n_neurons_90_range": [1, 1], "top_neurons": []},
...     "check": {"b_out": 0.0, "max_abs_error": 0.0, "max_rel_error_massive": 0.0,
...     "massive_mlp_out_mean": 3000.0, "massive_resid_post_mean": 3000.0, "mlp_share_of_resid": 1.0}})
>>> r.contributions.n_neurons_50, r.check.mlp_share_of_resid
(1, 1.0)

Residual values (contributions, |x| of ``hook_mlp_out``/``hook_resid_post``) are in the model's own
residual units; |x| of the other checkpoints is in the units of that hook (normalised input, neuron
activations). JSON keys are those of the files written before the records were typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record, json_field


@dataclass
class MassiveToken(Record):
    """A token whose block output is massive in ``dim``: where it is and its value h[dim] (residual units)."""

    sequence: int
    position: int
    token: str
    value: float


@dataclass
class TopUnit(Record):
    """A dim or neuron of one checkpoint: its largest |x| over tokens, the signed value there, and whether
    that token is a massive one."""

    unit: int
    max_abs: float
    signed: float
    at_massive_token: bool


@dataclass
class Checkpoint(Record):
    """|x| statistics of one MLP hook over real tokens (see :func:`mi_massive.analyses.mlp.neurons.checkpoint_stats`).

    ``max``/``median``: largest and median |x| (hook units), ``ratio`` = max / median; ``max_token_row``
    and ``max_unit``: where the max is; ``massive_token_max`` / ``ordinary_max`` / ``ordinary_median``:
    over the massive / ordinary tokens (None when there are none).
    """

    label: str
    hook: str
    max: float
    max_token_row: int
    max_unit: int
    median: float
    ratio: float
    top_units: list[TopUnit]
    massive_token_max: float | None
    ordinary_max: float | None
    ordinary_median: float | None


@dataclass
class TopNeuron(Record):
    """One neuron n's contribution c = hook_post[t, n] * W_out[n, dim] (residual units).

    ``massive``: mean c over the massive tokens; ``ordinary_mean`` / ``ordinary_max_abs``: over ordinary
    tokens; ``post_*``: the activation hook_post itself; ``w_out``: W_out[n, dim]; ``pre_*`` (and ``up_*``
    for gated MLPs, absent otherwise): the pre-activation (and up projection) of neuron n.
    """

    neuron: int
    massive: float
    w_out: float
    post_massive: float
    ordinary_mean: float | None
    ordinary_max_abs: float | None
    post_ordinary_mean: float | None
    post_ordinary_max_abs: float | None
    pre_massive: float | None = None
    pre_ordinary_max_abs: float | None = None
    up_massive: float | None = json_field(omit_none=True, default=None)
    up_ordinary_max_abs: float | None = json_field(omit_none=True, default=None)


@dataclass
class Contributions(Record):
    """Per-neuron contributions to ``dim`` at the massive tokens vs ordinary tokens (residual units).

    ``massive_total_mean``: mean over massive tokens of sum_n c (= hook_mlp_out[dim] - b_out[dim]; with a post-MLP
    norm, Gemma-2/3 and OLMo-2, the MLP's own output ln2_post.hook_in[dim] - b_out[dim], in its units), split into
    the same-sign (``massive_positive_mean``) and opposite-sign (``massive_negative_mean``) parts;
    ``n_neurons_50`` / ``n_neurons_90``: median number of neurons carrying 50% / 90% of it (and the range
    over massive tokens); ``top_neurons``: the largest contributors.
    """

    n_massive_tokens: int
    n_ordinary_tokens: int
    massive_total_mean: float
    massive_positive_mean: float
    massive_negative_mean: float
    ordinary_total_mean: float | None
    ordinary_total_max_abs: float | None
    n_neurons_50: int
    n_neurons_90: int
    n_neurons_50_range: list[int]
    n_neurons_90_range: list[int]
    top_neurons: list[TopNeuron]


@dataclass
class ReconstructionCheck(Record):
    """sum_n c[t, n] + b_out[dim] against hook_mlp_out[t, dim]: errors (residual units; relative at the
    massive tokens), the MLP's mean output and the block output at the massive tokens, and their ratio."""

    b_out: float
    max_abs_error: float
    max_rel_error_massive: float
    massive_mlp_out_mean: float
    massive_resid_post_mean: float
    mlp_share_of_resid: float | None


@dataclass(repr=False)
class MlpResult(Record):
    """MLP internals of block ``layer`` (0-based) for residual dim ``dim`` (see :mod:`mi_massive.analyses.mlp.neurons`).

    ``checkpoints``: per hook, |x| statistics over real tokens (:class:`Checkpoint`);
    ``contributions``: per-neuron contributions at the massive token(s) (:class:`Contributions`);
    ``check``: the reconstruction of ``hook_mlp_out[:, dim]`` from them (:class:`ReconstructionCheck`);
    ``massive_tokens``: the massive tokens (at most 20). ``to_dataframe()``: the top neurons.
    """

    provenance: dict[str, Any]
    layer: int
    dim: int
    gated: bool
    massive_tokens: list[MassiveToken]
    checkpoints: list[Checkpoint]
    contributions: Contributions
    check: ReconstructionCheck
    notes: list[str] = field(default_factory=list)

    _table = "top_neurons"

    @property
    def top_neurons(self) -> list[TopNeuron]:
        """The neurons contributing most to ``dim`` at the massive tokens (largest first)."""
        return self.contributions.top_neurons
