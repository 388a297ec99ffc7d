"""Typed records of the mechanism analyses (``mlp.json``, ``svd.json``, ``tokens.json``, ``intervene.json``).

Each result is a dataclass with ``provenance`` (model, corpus, options, versions) first; ``save`` writes
it atomically as JSON and ``load`` reads the plain dict back. Units are stated per field: residual
values are in the model's own residual units, perplexities are exp(nats per token).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mi_massive.results.io import read_json, write_json


class _Saveable:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> Path:
        return write_json(path, self)

    @staticmethod
    def load(path: str | Path) -> dict[str, Any]:
        """The saved record as a plain dict."""
        return read_json(path)


@dataclass
class MlpResult(_Saveable):
    """MLP internals of block ``layer`` for residual dim ``dim`` (see :mod:`mi_massive.analysis.mlp`).

    ``checkpoints``: per hook, |x| statistics over real tokens (max, where, median, ratio, top
    dims/neurons, and the massive token's max vs the ordinary tokens' max).
    ``contributions``: per-neuron contributions ``hook_post[t, n] * W_out[n, dim]`` at the massive
    token(s) and over ordinary tokens; neurons carrying 50% / 90% of the massive value.
    ``check``: the reconstruction sum_n c[t, n] + b_out[dim] versus ``hook_mlp_out[t, dim]``.
    """

    provenance: dict[str, Any]
    layer: int
    dim: int
    gated: bool
    massive_tokens: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    contributions: dict[str, Any]
    check: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class SvdResult(_Saveable):
    """SVD of ``W_out`` of block ``layer`` and the alignment of tokens with its top input direction u_1.

    Orientation: ``out = h @ W_out`` with ``W_out`` [d_mlp, d_model] = U diag(S) V^T; input (neuron-space)
    directions are the columns of U, output (residual) directions the rows of V^T; signs fixed so that
    V^T[k, dim] >= 0 for every k. ``regression``: OLS of y = mlp_out[t, dim] - b_out[dim] on h_t . u_1 per
    position class, with R^2 and a bootstrap CI, plus a plain statement when the fit is near-tautological.
    """

    provenance: dict[str, Any]
    layer: int
    dim: int
    spectrum: dict[str, Any]
    alignment: dict[str, Any]
    regression: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class TokensResult(_Saveable):
    """Which tokens carry massive activations, and the function-vs-content-word comparison.

    ``classes``: per token class (start, delimiter, other) the number of tokens, of massive tokens and
    the rate with a Wilson CI; ``top_tokens``: most frequent massive token strings; ``non_initial``:
    massive entries at positions > 0. ``words``: the four seed metrics per word type and the tests.
    """

    provenance: dict[str, Any]
    layer: int
    classes: list[dict[str, Any]]
    top_tokens: list[dict[str, Any]]
    non_initial: list[dict[str, Any]]
    words: dict[str, Any]
    conclusion: list[str] = field(default_factory=list)


@dataclass
class InterventionResult(_Saveable):
    """Perplexity under Sun/Owen-style interventions at the first massive layer (one layer and every layer).

    ``runs``: one record per condition with the per-chunk NLL sums (nats) and scored-token counts, the
    perplexity with a bootstrap CI over chunks, the paired ratio to ``original`` with its CI, and the
    regeneration profile (mean |h| at the edited entries per later layer: clean, block-computed before
    the edit, after the edit). ``calibration``: the means (per layer, position class and dim) and where
    they come from (text disjoint from the evaluation chunks).
    """

    provenance: dict[str, Any]
    first_layer: int
    dims: list[int]
    edited_layers_all: list[int]
    calibration: dict[str, Any]
    evaluation: dict[str, Any]
    runs: list[dict[str, Any]]
    table: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
