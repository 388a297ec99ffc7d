"""Small statistics helpers shared by every analysis (pure functions on numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Mean of per-sequence values with its sample std and a two-sided 95% t-interval for the mean.

    With a single value the std is 0 and the interval collapses to the value (no spread measurable).
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "ci95": [self.ci_low, self.ci_high], "n": self.n}


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, std (ddof=1) and t-based confidence interval of ``values``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarize() needs at least one value")
    mean = float(arr.mean())
    if arr.size == 1:
        return Summary(mean, 0.0, mean, mean, 1)
    std = float(arr.std(ddof=1))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, arr.size - 1)) * std / math.sqrt(arr.size)
    return Summary(mean, std, mean - half, mean + half, int(arr.size))


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
                 statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over resampled ``values`` (deterministic for ``seed``)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("bootstrap_ci() needs at least one value")
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    stats_ = np.apply_along_axis(statistic, 1, arr[idx]) if statistic is not np.mean else arr[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats_, alpha)), float(np.quantile(stats_, 1 - alpha))
