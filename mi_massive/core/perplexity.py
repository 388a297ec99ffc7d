"""Perplexity from logits, per chunk, with bootstrap confidence intervals over chunks (pure functions).

Convention: a chunk of T real tokens contributes the T - 1 next-token predictions
``logits[t] -> ids[t + 1]`` for t = 0..T-2 (pads never enter: they are masked out as inputs and as
targets). With a prepended BOS the BOS predicts the first text token, so every text token is scored;
without BOS the first text token is context only. Corpus perplexity is
``exp(sum of token NLLs / number of scored tokens)`` (nats), i.e. every scored token weighs the same;
with equal-length chunks this equals Sun et al.'s per-chunk-mean formula (spec §1.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int


def token_nll(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"],
              mask: Bool[torch.Tensor, "batch pos"] | None = None) -> tuple[Float[torch.Tensor, "batch target"], Bool[torch.Tensor, "batch target"]]:
    """Negative log-likelihood (nats) of each next token and the mask of scored targets.

    Returns ``(nll, scored)`` of shape [batch, pos - 1]: ``nll[b, t] = -log p(ids[b, t+1] | ids[b, :t+1])``;
    ``scored[b, t]`` is True when both position t and t+1 are real tokens. Computed in float64.
    """
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    target = ids[:, 1:]
    nll = -logp.gather(-1, target[..., None])[..., 0]
    scored = torch.ones_like(target, dtype=torch.bool) if mask is None else (mask[:, :-1] & mask[:, 1:])
    return nll.masked_fill(~scored, 0.0), scored


def chunk_nll(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"],
              mask: Bool[torch.Tensor, "batch pos"] | None = None) -> tuple[list[float], list[int]]:
    """Per chunk (row): (sum of token NLLs in nats, number of scored tokens)."""
    nll, scored = token_nll(logits, ids, mask)
    return nll.sum(1).tolist(), scored.sum(1).tolist()


def perplexity(nll_sums: Sequence[float], counts: Sequence[int]) -> float:
    """exp(total NLL / total scored tokens): the corpus perplexity of a set of chunks."""
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


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _boot_ppl(nll: np.ndarray, cnt: np.ndarray, idx: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(nll[idx].sum(1) / cnt[idx].sum(1))


def ppl_with_ci(nll_sums: Sequence[float], counts: Sequence[int], *, n_boot: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> PplEstimate:
    """Perplexity and its bootstrap CI over chunks (the same ``seed`` gives the same resamples)."""
    nll, cnt = np.asarray(nll_sums, float), np.asarray(counts, float)
    point = perplexity(nll, cnt)
    if len(nll) < 2:
        return PplEstimate(point, point, point, len(nll), int(cnt.sum()))
    boots = _boot_ppl(nll, cnt, _boot_indices(len(nll), n_boot, seed))
    a = (1 - confidence) / 2
    return PplEstimate(point, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)), len(nll), int(cnt.sum()))


def paired_ratio_ci(base: tuple[Sequence[float], Sequence[int]], other: tuple[Sequence[float], Sequence[int]], *,
                    n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high): ppl(other) / ppl(base) on the same chunks, with a paired bootstrap CI.

    Both runs are resampled with the same chunk indices, so chunk difficulty cancels and a ratio
    whose interval excludes 1 is a real change for this chunk population.
    """
    nb, cb = np.asarray(base[0], float), np.asarray(base[1], float)
    no, co = np.asarray(other[0], float), np.asarray(other[1], float)
    if len(nb) != len(no):
        raise ValueError("paired runs must cover the same chunks")
    ratio = perplexity(no, co) / perplexity(nb, cb)
    if len(nb) < 2:
        return ratio, ratio, ratio
    idx = _boot_indices(len(nb), n_boot, seed)
    with np.errstate(over="ignore", invalid="ignore"):
        boots = _boot_ppl(no, co, idx) / _boot_ppl(nb, cb, idx)
    a = (1 - confidence) / 2
    return ratio, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
