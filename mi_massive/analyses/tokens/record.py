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
class TokensResult(Record):
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
