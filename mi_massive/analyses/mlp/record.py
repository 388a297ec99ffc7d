"""Typed records of the mechanism analyses (``mlp.json``, ``svd.json``, ``tokens.json``, ``intervene.json``).

Each result is a dataclass with ``provenance`` (model, corpus, options, versions) first; ``save`` writes
it atomically as JSON and ``load`` reads the plain dict back. Units are stated per field: residual
values are in the model's own residual units, perplexities are exp(nats per token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mi_massive.core.records import Record


@dataclass(repr=False)
class MlpResult(Record):
    """MLP internals of block ``layer`` for residual dim ``dim`` (see :mod:`mi_massive.analyses.mlp.neurons`).

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
