"""Massive-activation statistics of residual-stream tensors (pure functions, no model access).

All magnitudes are absolute values |h| of residual coordinates, in the model's own units. The
median of a layer is taken per sequence over all (position, dim) entries at real tokens (pad
positions excluded). Detection follows Owen et al. (experiments-spec §2.2), per sequence:
an entry is *massive* when |h| > ``abs_threshold`` (100) and |h| > ``rel_threshold`` (1000) x that
median; *near-massive* when it passes the absolute but not the relative test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int

from mi_massive.analyses.scan.median import exact_median, row_medians

ABS_THRESHOLD = 100.0
REL_THRESHOLD = 1000.0


def true_median(values: Float[torch.Tensor, "..."]) -> float:
    """The median of all entries, averaging the two middle values for an even count (numpy's rule).

    Computed with numpy (several times faster than ``torch.kthvalue`` on CPU), on a bracketing band
    for large tensors (:func:`mi_massive.analyses.scan.median.exact_median`, same value).
    """
    return exact_median(values)


def _real_entries(a: Float[torch.Tensor, "pos d_model"], row_mask: Bool[torch.Tensor, "pos"]) -> torch.Tensor:
    """The rows of ``a`` at real positions: a free slice for right padding, a gather otherwise."""
    n = int(row_mask.sum())
    return a[:n] if bool(row_mask[:n].all()) else a[row_mask]


@dataclass
class SequenceStats:
    """Statistics of one layer's |h| for a batch of sequences.

    top_values/top_positions/top_dims: [batch, k], the k largest |h| at real tokens, descending.
    median: [batch] median |h|; ratio: [batch] top-1 / median (dimensionless);
    dim_max: [batch, d_model] max over real positions of |h| per dim.
    """

    top_values: Float[torch.Tensor, "batch k"]
    top_positions: Int[torch.Tensor, "batch k"]
    top_dims: Int[torch.Tensor, "batch k"]
    median: Float[torch.Tensor, "batch"]
    ratio: Float[torch.Tensor, "batch"]
    dim_max: Float[torch.Tensor, "batch d_model"]


def sequence_stats(h: Float[torch.Tensor, "batch pos d_model"], mask: Bool[torch.Tensor, "batch pos"],
                   k: int) -> SequenceStats:
    """Top-k, median, ratio and per-dim max of |h| per sequence, ignoring positions where ``mask`` is False."""
    a = h.abs().float()
    d_model = a.shape[-1]
    # pads can never reach a top-k (|h| >= 0); no copy when every position is real
    masked = a if bool(mask.all()) else a.masked_fill(~mask[..., None].to(a.device), -1.0)
    flat = masked.flatten(1)
    n_real = mask.sum(1) * d_model
    if int(n_real.min()) < k:
        raise ValueError(f"top_k={k} is more than the number of entries in the shortest sequence")
    top = flat.topk(k, dim=1)
    medians = row_medians(a, mask)
    return SequenceStats(
        top_values=top.values,
        top_positions=top.indices // d_model,
        top_dims=top.indices % d_model,
        median=medians,
        ratio=top.values[:, 0] / medians.clamp_min(torch.finfo(torch.float32).tiny),
        dim_max=masked.amax(1).clamp_min(0.0),
    )


@dataclass
class Detection:
    """Coordinates and signed values of flagged entries: ``rows``/``positions``/``dims``/``values`` are 1-D."""

    rows: Int[torch.Tensor, "n"]
    positions: Int[torch.Tensor, "n"]
    dims: Int[torch.Tensor, "n"]
    values: Float[torch.Tensor, "n"]


def detect(h: Float[torch.Tensor, "batch pos d_model"], mask: Bool[torch.Tensor, "batch pos"],
           median: Float[torch.Tensor, "batch"], *, abs_threshold: float = ABS_THRESHOLD,
           rel_threshold: float = REL_THRESHOLD) -> tuple[Detection, Detection]:
    """(massive, near-massive) entries of one layer, per sequence rule (strict ``>`` on both tests)."""
    rows, pos, dims = (h.abs().float() > abs_threshold).nonzero().unbind(1)  # few candidates: test the rest on them
    values = h[rows, pos, dims].float()
    real = mask.to(h.device)[rows, pos]
    rel = values.abs() > rel_threshold * median.to(values.device)[rows]
    result = []
    for chosen in (real & rel, real & ~rel):
        result.append(Detection(rows[chosen], pos[chosen], dims[chosen], values[chosen]))
    return result[0], result[1]
