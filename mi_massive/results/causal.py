"""Typed records of the causal experiments and their JSON form.

Files: ``heads.json`` (:class:`HeadScores`), ``attribution.json`` (:class:`AttributionResult`),
``ablation.json`` (:class:`AblationResult`), ``patching.json`` (:class:`PatchingResult`),
``sweep.json`` (:class:`SweepResult`). Every file has a top-level ``provenance``. Layers and heads
are 0-based; residual values are signed and in residual-stream units unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mi_massive.results.io import read_json, write_json


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self)


# ------------------------------------------------------------------------------------------ heads
@dataclass
class HeadScore:
    """Sink scores of one head (probabilities, 0..1).

    ``to_first``: mean over sequences of the per-sequence mean over queries q >= ``min_query`` of
    A[q, 0]; ``to_massive``: the same for the summed attention to the positions the scan found
    massive in that sequence (None when no sequence has one). ``*_ci95``: 95% t-interval over
    sequences; ``n_massive``: number of sequences that had massive positions.
    """

    layer: int
    head: int
    to_first: float
    to_first_ci95: list[float]
    to_massive: float | None
    to_massive_ci95: list[float] | None
    n_massive: int


@dataclass
class HeadScores(_Record):
    """Per-head sink scores; ``per_sequence_first``/``per_sequence_massive``: [layer][head][sequence]."""

    provenance: dict[str, Any]
    n_layers: int
    n_heads: int
    min_query: int
    massive_positions: list[list[int]]
    heads: list[HeadScore]
    per_sequence_first: list[list[list[float]]]
    per_sequence_massive: list[list[list[float | None]]]

    def matrix(self, by: str = "first") -> list[list[float]]:
        """[layer][head] of the mean score (``by`` = ``first`` or ``massive``; missing -> nan)."""
        key = "to_first" if by == "first" else "to_massive"
        out = [[float("nan")] * self.n_heads for _ in range(self.n_layers)]
        for h in self.heads:
            value = getattr(h, key)
            out[h.layer][h.head] = float("nan") if value is None else value
        return out

    def ranking(self, by: str = "first") -> list[HeadScore]:
        """Heads sorted by score, highest first (heads without a score last)."""
        key = "to_first" if by == "first" else "to_massive"
        return sorted(self.heads, key=lambda h: -(getattr(h, key) if getattr(h, key) is not None else -1.0))

    def top_k(self, k: int, by: str = "first") -> list[tuple[int, int]]:
        return [(h.layer, h.head) for h in self.ranking(by)[:k]]

    def bottom_k(self, k: int, by: str = "first") -> list[tuple[int, int]]:
        ranked = [h for h in self.ranking(by) if getattr(h, "to_first" if by == "first" else "to_massive") is not None]
        return [(h.layer, h.head) for h in ranked[::-1][:k]]

    @classmethod
    def load(cls, path: str | Path) -> "HeadScores":
        data = read_json(path)
        data["heads"] = [HeadScore(**h) for h in data["heads"]]
        return cls(**data)


# ------------------------------------------------------------------------------------ attribution
@dataclass
class Contribution:
    """One additive term of a residual entry: ``value`` in residual units (signed).

    ``kind``: ``embed``, ``pos_embed``, ``head``, ``attn_bias`` (b_O), ``mlp`` (a whole MLP output,
    b_out included), ``neuron`` (h_post[t, n] * W_out[n, d] of the dominant MLP), ``mlp_bias``.
    Neurons, ``neuron_rest`` and ``mlp_bias`` of the dominant MLP *refine* its ``mlp`` term (they are not added again).
    """

    kind: str
    label: str
    value: float
    layer: int | None = None
    index: int | None = None  # head or neuron


@dataclass
class AttributionResult(_Record):
    """Exact decomposition of h_L[sequence, position, dim] (``hook`` = ``blocks.L.hook_resid_post``).

    ``total`` = sum of the non-refining terms; ``rel_error`` = |total - residual| / |residual|.
    ``dominant_mlp``: the MLP layer with the largest |contribution|, decomposed per neuron.
    """

    provenance: dict[str, Any]
    layer: int
    position: int
    dim: int
    sequence: int
    token: str
    residual: float
    total: float
    rel_error: float
    dominant_mlp: int | None
    contributions: list[Contribution]
    per_sequence: list[dict[str, Any]] = field(default_factory=list)

    def terms(self) -> list[Contribution]:
        """The terms that add up to the residual (embeddings, heads, attention biases, MLP outputs)."""
        return [c for c in self.contributions if c.kind not in ("neuron", "neuron_rest", "mlp_bias")]

    def top(self, k: int = 10, *, kinds: tuple[str, ...] | None = None) -> list[Contribution]:
        pool = self.contributions if kinds is None else [c for c in self.contributions if c.kind in kinds]
        return sorted(pool, key=lambda c: -abs(c.value))[:k]

    @classmethod
    def load(cls, path: str | Path) -> "AttributionResult":
        data = read_json(path)
        data["contributions"] = [Contribution(**c) for c in data["contributions"]]
        return cls(**data)


# --------------------------------------------------------------------------------------- ablation
@dataclass
class Effect:
    """Change of one metric at one layer under an ablation: ablated - baseline, per sequence.

    ``mean`` and ``ci95`` (percentile bootstrap over sequences) are in the metric's units;
    ``relative`` = mean / |baseline mean|. ``null_ci95``: 2.5/97.5% quantiles of the same mean change
    under random same-size ablations; ``within_noise`` is True when ``mean`` lies inside that range
    (None: no null was run).
    """

    metric: str
    layer: int
    baseline: float
    ablated: float
    mean: float
    ci95: list[float]
    relative: float
    null_ci95: list[float] | None = None
    within_noise: bool | None = None
    label: str = ""


@dataclass
class Condition:
    """One ablation (what was removed and how) with its effects and the null's per-set mean changes."""

    name: str
    kind: str  # heads, attention, mlp, neurons
    targets: list
    mode: str
    effects: list[Effect]
    null_kind: str | None = None
    null_sets: list = field(default_factory=list)
    null_means: dict[str, list[float]] = field(default_factory=dict)  # "metric@layer" -> per random set


@dataclass
class AblationResult(_Record):
    """Baseline metrics and every condition. Metrics: ``top1`` (max |h| per layer and sequence) and
    ``entry p{pos} d{dim}`` (signed h[pos, dim] at every layer) for each tracked entry."""

    provenance: dict[str, Any]
    metrics: list[str]
    tracked: list[list[int]]
    baseline: dict[str, list[float]]  # "metric@layer" -> per sequence
    rerun_max_abs_diff: float
    conditions: list[Condition]

    @classmethod
    def load(cls, path: str | Path) -> "AblationResult":
        data = read_json(path)
        data["conditions"] = [Condition(**{**c, "effects": [Effect(**e) for e in c["effects"]]})
                              for c in data["conditions"]]
        return cls(**data)


# --------------------------------------------------------------------------------------- patching
@dataclass
class PatchingResult(_Record):
    """Activation patching clean -> corrupted.

    ``results[component]`` is a [layer][pos] grid (resid_pre, attn_out, mlp_out) or [layer][head]
    (head), each cell the metric of the corrupted run with that one activation replaced by the
    clean one. ``clean`` / ``corrupted``: the unpatched metric values. ``normalised`` grids are
    (patched - corrupted) / (clean - corrupted): 1 = fully restored.
    """

    provenance: dict[str, Any]
    metric: str
    clean: float
    corrupted: float
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    results: dict[str, list[list[float]]]
    normalised: dict[str, list[list[float]]]
    backend: str


# ------------------------------------------------------------------------------------------ sweep
@dataclass
class SweepResult(_Record):
    """Single-head ablation sweep.

    ``values[layer][head][sequence][metric]``: each metric with that one head ablated;
    ``baseline[sequence][metric]``: unablated. Metrics: ``entry L{l} p{pos} d{dim}`` (signed residual
    value) and optionally ``loss`` (mean next-token cross-entropy, nats). ``effect[layer][head][metric]``
    = mean over sequences of values - baseline.
    """

    provenance: dict[str, Any]
    metric_names: list[str]
    mode: str
    method: str
    baseline: list[list[float]]
    values: list[list[list[list[float]]]]
    effect: list[list[list[float]]]
    seconds: float

    @classmethod
    def load(cls, path: str | Path) -> "SweepResult":
        return cls(**read_json(path))
