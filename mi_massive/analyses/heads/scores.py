"""Head sink scores (pure functions of attention patterns).

A head's sink score for one sequence is the mean, over queries q >= ``min_query`` (default 1: query 0
can attend only to itself, so including it would add a trivial 1.0), of the total attention
probability A[q, k] on a key set S: S = {0} ("to_first") or S = the positions the scan found massive
in that sequence ("to_massive"). Units: probability (0..1). Padding queries are excluded.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Bool, Float

from mi_massive.core.stats import summarize


def sink_scores(pattern: Float[torch.Tensor, "batch head q k"], mask: Bool[torch.Tensor, "batch pos"],
                key_sets: Sequence[Sequence[int]], *, min_query: int = 1) -> Float[torch.Tensor, "batch head"]:
    """Per sequence and head: mean over real queries q >= ``min_query`` of sum_{k in S} A[q, k].

    ``key_sets[i]`` is S for sequence i; an empty set (or no real query) gives NaN for that sequence.
    """
    b, n_heads = pattern.shape[:2]
    out = torch.full((b, n_heads), float("nan"))
    for i in range(b):
        keys = [k for k in key_sets[i] if k < pattern.shape[-1]]
        queries = mask[i].nonzero().squeeze(1)
        queries = queries[queries >= min_query]
        if not keys or queries.numel() == 0:
            continue
        mass = pattern[i][:, queries][:, :, keys].sum(-1)  # [head, n_queries]
        out[i] = mass.mean(-1)
    return out


def summarize_scores(values: Float[torch.Tensor, "seq"]) -> tuple[float | None, list[float] | None, int]:
    """(mean, 95% t-interval, n) over the sequences with a score (NaNs dropped); (None, None, 0) if none."""
    vals = values[~values.isnan()].tolist()
    if not vals:
        return None, None, 0
    s = summarize(vals)
    return s.mean, [s.ci_low, s.ci_high], s.n
