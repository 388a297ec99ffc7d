"""Statistics shared by every analysis: summaries, ONE bootstrap, ONE next-token NLL, perplexity.

>>> import numpy as np, torch
>>> summarize([1.0, 2.0, 3.0]).mean
2.0
>>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0], n_boot=200, seed=0)
>>> 1.0 <= lo <= 2.5 <= hi <= 4.0
True
>>> nll, scored = token_nll(torch.zeros(1, 4, 10), torch.tensor([[1, 2, 3, 4]]))
>>> round(float(nll[0, 0]), 4), round(perplexity(*chunk_nll(torch.zeros(1, 4, 10), torch.tensor([[1, 2, 3, 4]]))), 4)
(2.3026, 10.0)

Resampling: :func:`bootstrap_indices` (numpy ``default_rng(seed).integers(0, n, (n_boot, n))``)
is the one resampling primitive; :func:`bootstrap_distribution` applies a vectorised statistic to
paired resamples of several arrays and :func:`percentile_ci` turns the draws into an interval.
Every bootstrap interval in the package (:func:`bootstrap_ci`, :func:`ppl_with_ci`,
:func:`paired_ratio_ci`, the R^2 CI of ``svd``, the Cohen's d CI of ``tokens``) is built from them.

Next-token NLL (nats): :func:`token_nll` is the one implementation; :func:`chunk_nll` (per-chunk
sums, perplexity), :func:`sequence_loss` (per-sequence mean) and ``training.lm_loss`` (batch mean for
training) are views of it.

Perplexity convention: a chunk of T real tokens contributes the T - 1 next-token predictions
``logits[t] -> ids[t + 1]`` for t = 0..T-2 (pads never enter: they are masked out as inputs and as
targets). With a prepended BOS the BOS predicts the first text token, so every text token is scored;
without BOS the first text token is context only. Corpus perplexity is
``exp(sum of token NLLs / number of scored tokens)`` (nats), i.e. every scored token weighs the same;
with equal-length chunks this equals Sun et al.'s per-chunk-mean formula (spec §1.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from mi_massive.errors import MiMassiveError


# ------------------------------------------------------------------------------------ summaries
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
    """Mean, std (ddof=1) and t-based confidence interval of ``values``.

    >>> s = summarize([1.0, 2.0, 3.0])
    >>> s.mean, s.std, s.n
    (2.0, 1.0, 3)
    """
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


# ------------------------------------------------------------------------------------ bootstrap
def bootstrap_indices(n: int, n_boot: int, seed: int = 0, *,
                      rng: np.random.Generator | None = None) -> Int[np.ndarray, "n_boot n"]:
    """Resample indices: row b holds ``n`` draws with replacement from ``0..n-1``.

    >>> bootstrap_indices(3, 2, seed=0).shape
    (2, 3)

    Draws ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))``; pass ``rng`` instead of
    ``seed`` to draw several groups from one generator in sequence.
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    return rng.integers(0, n, size=(n_boot, n))


def percentile_ci(draws: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap draws (percentile method).

    >>> [round(v, 6) for v in percentile_ci(np.arange(101.0), 0.9)]
    [5.0, 95.0]
    """
    a = (1 - confidence) / 2
    return float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a))


def bootstrap_distribution(statistic: Callable[..., np.ndarray], *arrays: Sequence[float], n_boot: int = 2000,
                           seed: int = 0) -> np.ndarray:
    """``statistic(*resampled)`` for ``n_boot`` paired resamples (the same indices for every array).

    >>> draws = bootstrap_distribution(lambda x: x.mean(1), [1.0, 2.0, 3.0], n_boot=5)
    >>> draws.shape
    (5,)

    Each resampled array has shape [n_boot, n]; ``statistic`` must reduce axis 1 and return [n_boot].
    """
    arrs = [np.asarray(a, dtype=np.float64) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise MiMassiveError(f"paired bootstrap needs arrays of equal length; got {[len(a) for a in arrs]}")
    idx = bootstrap_indices(n, n_boot, seed)
    return statistic(*(a[idx] for a in arrs))


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
                 statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over resampled ``values`` (deterministic for ``seed``).

    >>> bootstrap_ci([5.0])
    (5.0, 5.0)
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("bootstrap_ci() needs at least one value")
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    if statistic is np.mean:
        draws = bootstrap_distribution(lambda x: x.mean(axis=1), arr, n_boot=n_boot, seed=seed)
    else:
        draws = bootstrap_distribution(lambda x: np.apply_along_axis(statistic, 1, x), arr, n_boot=n_boot, seed=seed)
    return percentile_ci(draws, confidence)


def r2_bootstrap_ci(x: Sequence[float], y: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the OLS R^2 of y on x (resampling (x, y) pairs); None when R^2 is undefined.

    >>> lo, hi = r2_bootstrap_ci([0.0, 1.0, 2.0, 3.0, 4.0], [0.1, 2.0, 3.9, 6.2, 8.0], n_boot=200)
    >>> 0.99 < lo <= hi < 1.0 + 1e-9
    True

    Simple regression: R^2 = Pearson r^2 of each resample (unitless, 0..1); resamples where r is
    undefined (constant x or y) are dropped.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None

    def pearson(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        xc, yc = xs - xs.mean(1, keepdims=True), ys - ys.mean(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (xc * yc).sum(1) / np.sqrt((xc ** 2).sum(1) * (yc ** 2).sum(1))

    r = bootstrap_distribution(pearson, x, y, n_boot=n_boot, seed=seed)
    r2 = r[np.isfinite(r)] ** 2
    return percentile_ci(r2, confidence) if len(r2) else None


def bootstrap_d_ci(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of Cohen's d (pooled sd, ddof=1), resampling each group independently.

    >>> lo, hi = bootstrap_d_ci([1.0, 2.0, 3.0, 4.0], [11.0, 12.0, 13.0, 14.0], n_boot=200)
    >>> hi < -5
    True

    d = (mean x - mean y) / sqrt((var x + var y) / 2), in pooled standard deviations. One generator
    draws x's resamples, then y's. (nan, nan) when a group has fewer than 2 values.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    xs = x[bootstrap_indices(len(x), n_boot, rng=rng)]
    ys = y[bootstrap_indices(len(y), n_boot, rng=rng)]
    sd = np.sqrt((xs.var(1, ddof=1) + ys.var(1, ddof=1)) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (xs.mean(1) - ys.mean(1)) / sd
    return percentile_ci(d[np.isfinite(d)], confidence)


# ------------------------------------------------------------------------------ next-token NLL
def token_nll(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"],
              mask: Bool[torch.Tensor, "batch pos"] | None = None, *, dtype: torch.dtype = torch.float64
              ) -> tuple[Float[torch.Tensor, "batch target"], Bool[torch.Tensor, "batch target"]]:
    """Negative log-likelihood (nats) of each next token and the mask of scored targets.

    >>> nll, scored = token_nll(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]))
    >>> [round(v, 4) for v in nll[0].tolist()], scored.tolist()
    ([1.3863, 1.3863], [[True, True]])

    Returns ``(nll, scored)`` of shape [batch, pos - 1]: ``nll[b, t] = -log p(ids[b, t+1] | ids[b, :t+1])``;
    ``scored[b, t]`` is True when both position t and t+1 are real tokens (unscored entries are 0).
    Computed in ``dtype`` (float64 by default; float32 for training, which needs gradients cheaply).
    """
    logp = torch.log_softmax(logits[:, :-1].to(dtype), dim=-1)
    target = ids[:, 1:].to(logp.device)
    nll = -logp.gather(-1, target[..., None])[..., 0]
    mask = None if mask is None else mask.to(logp.device)
    scored = torch.ones_like(target, dtype=torch.bool) if mask is None else (mask[:, :-1] & mask[:, 1:])
    return nll.masked_fill(~scored, 0.0), scored


def chunk_nll(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"],
              mask: Bool[torch.Tensor, "batch pos"] | None = None) -> tuple[list[float], list[int]]:
    """Per chunk (row): (sum of token NLLs in nats, number of scored tokens).

    >>> chunk_nll(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long))[1]
    [2, 2]
    """
    nll, scored = token_nll(logits, ids, mask)
    return nll.sum(1).tolist(), scored.sum(1).tolist()


def sequence_loss(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"],
                  mask: Bool[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch"]:
    """Mean next-token cross-entropy (nats, float32) per sequence over real targets.

    >>> ids = torch.zeros(1, 3, dtype=torch.long)
    >>> round(float(sequence_loss(torch.zeros(1, 3, 4), ids, torch.ones(1, 3, dtype=torch.bool))[0]), 4)
    1.3863
    """
    nll, _ = token_nll(logits, ids, dtype=torch.float32)
    valid = mask[:, 1:].to(nll.device).float()
    return (nll * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def perplexity(nll_sums: Sequence[float], counts: Sequence[int]) -> float:
    """exp(total NLL / total scored tokens): the corpus perplexity of a set of chunks.

    >>> round(perplexity([2.0, 4.0], [1, 2]), 4)
    7.3891
    """
    total = float(np.sum(counts))
    if total <= 0:
        raise ValueError("no scored tokens")
    return math.exp(float(np.sum(nll_sums)) / total)


@dataclass(frozen=True)
class PplEstimate:
    """A perplexity with its percentile-bootstrap interval over chunks (resampling chunks with replacement)."""

    ppl: float
    ci_low: float
    ci_high: float
    n_chunks: int
    n_tokens: int

    def to_dict(self) -> dict:
        return {"ppl": self.ppl, "ci95": [self.ci_low, self.ci_high], "n_chunks": self.n_chunks,
                "n_tokens": self.n_tokens}


def _boot_ppl(nll: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Perplexity of each resample ([n_boot, n] arrays of chunk NLL sums and counts)."""
    with np.errstate(over="ignore"):
        return np.exp(nll.sum(1) / cnt.sum(1))


def ppl_with_ci(nll_sums: Sequence[float], counts: Sequence[int], *, n_boot: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> PplEstimate:
    """Perplexity and its bootstrap CI over chunks (the same ``seed`` gives the same resamples).

    >>> ppl_with_ci([2.0], [1]).ppl == ppl_with_ci([2.0], [1]).ci_low
    True
    """
    nll, cnt = np.asarray(nll_sums, float), np.asarray(counts, float)
    point = perplexity(nll, cnt)
    if len(nll) < 2:
        return PplEstimate(point, point, point, len(nll), int(cnt.sum()))
    lo, hi = percentile_ci(bootstrap_distribution(_boot_ppl, nll, cnt, n_boot=n_boot, seed=seed), confidence)
    return PplEstimate(point, lo, hi, len(nll), int(cnt.sum()))


def paired_ratio_ci(base: tuple[Sequence[float], Sequence[int]], other: tuple[Sequence[float], Sequence[int]], *,
                    n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high): ppl(other) / ppl(base) on the same chunks, with a paired bootstrap CI.

    >>> paired_ratio_ci(([1.0, 2.0], [1, 1]), ([1.0, 2.0], [1, 1]), n_boot=50)
    (1.0, 1.0, 1.0)

    Both runs are resampled with the same chunk indices, so chunk difficulty cancels and a ratio
    whose interval excludes 1 is a real change for this chunk population.
    """
    nb, cb = np.asarray(base[0], float), np.asarray(base[1], float)
    no, co = np.asarray(other[0], float), np.asarray(other[1], float)
    if len(nb) != len(no):
        raise MiMassiveError(f"paired runs must cover the same chunks; got {len(nb)} and {len(no)} chunks")
    ratio = perplexity(no, co) / perplexity(nb, cb)
    if len(nb) < 2:
        return ratio, ratio, ratio

    def stat(nb_, cb_, no_, co_):
        with np.errstate(over="ignore", invalid="ignore"):
            return _boot_ppl(no_, co_) / _boot_ppl(nb_, cb_)

    return (ratio, *percentile_ci(bootstrap_distribution(stat, nb, cb, no, co, n_boot=n_boot, seed=seed), confidence))
