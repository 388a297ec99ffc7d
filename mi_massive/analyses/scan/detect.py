"""Massive-activation statistics of residual-stream tensors (pure functions, no model access).

All magnitudes are absolute values |h| of residual coordinates, in the model's own units. The
median of a layer is taken per sequence over all (position, dim) entries at real tokens (pad
positions excluded). Detection follows Owen et al. (experiments-spec §2.2), per sequence:
an entry is *massive* when |h| > ``abs_threshold`` (100) and |h| > ``rel_threshold`` (1000) x that
median; *near-massive* when it passes the absolute but not the relative test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from mi_massive.analyses.scan.median import row_medians

ABS_THRESHOLD = 100.0
REL_THRESHOLD = 1000.0


@dataclass
class Detection:
    """Coordinates and signed values of flagged entries, 1-D each: batch row, position, feature (dim), value.

    Torch tensors where :func:`detect` made them, numpy arrays on the host from
    :func:`mi_massive.analyses.scan.reduce.reduce_batch`.
    """

    rows: Int[torch.Tensor, "n"] | Int[np.ndarray, "n"]
    positions: Int[torch.Tensor, "n"] | Int[np.ndarray, "n"]
    dims: Int[torch.Tensor, "n"] | Int[np.ndarray, "n"]
    values: Float[torch.Tensor, "n"] | Float[np.ndarray, "n"]


def detect(h: Float[torch.Tensor, "batch pos d_model"], mask: Bool[torch.Tensor, "batch pos"],
           median: Float[torch.Tensor, "batch"] | None = None, *, abs_threshold: float = ABS_THRESHOLD,
           rel_threshold: float = REL_THRESHOLD) -> tuple[Detection, Detection]:
    """(massive, near-massive) entries of one layer, per sequence rule (strict ``>`` on both tests).

    >>> h = torch.full((1, 3, 4), 0.5); h[0, 0, 2] = -5000.0; h[0, 1, 1] = 150.0
    >>> massive, near = detect(h, torch.ones(1, 3, dtype=torch.bool))
    >>> massive.dims.tolist(), massive.values.tolist(), near.values.tolist()
    ([2], [-5000.0], [150.0])

    ``median`` [batch]: each sequence's median |h| over its real entries, computed here when not given
    (:func:`~mi_massive.analyses.scan.median.row_medians`). The scan uses the batched, sync-free version of
    this rule (:func:`mi_massive.analyses.scan.reduce.reduce_batch`); this one serves single-hook callers.
    """
    a = h.abs().float()
    if median is None:
        median = row_medians(a, mask)
    rows, pos, dims = (a > abs_threshold).nonzero().unbind(1)  # few candidates: test the rest on them
    values = h[rows, pos, dims].float()
    real = mask.to(h.device)[rows, pos]
    rel = values.abs() > rel_threshold * median.to(values.device)[rows]
    result = []
    for chosen in (real & rel, real & ~rel):
        result.append(Detection(rows[chosen], pos[chosen], dims[chosen], values[chosen]))
    return result[0], result[1]
