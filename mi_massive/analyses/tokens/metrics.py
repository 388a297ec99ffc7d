"""Which tokens carry massive activations, and function vs content words (pure functions; spec §3.7-3.8, §5.3.5).

Group statistics (:func:`compare_groups`): Welch's t-test (unequal variances), the two-sided
Mann-Whitney U test, Cohen's d with the average-variance denominator and a percentile-bootstrap CI
(resampling within each group), and the common-language effect size AUC = U / (n1 n2) = P(X > Y) +
P(X = Y) / 2. Rates use the Wilson score interval.

The four seed metrics (LUDAN Exp5, which never ran) are defined per word type on a fixed number of
occurrences (so frequent function words are not favoured by having more data):
``P = H U_k`` (left projections of the types' MLP activations on the top-k input directions).

1. ``concentration``: share of the summed per-component variance of P in its top-3 components;
2. ``asymmetry``: that top-3 share on the left (P) divided by the same share on the right
   (components scaled by sigma: variances sigma_j^2 var(P_j), i.e. the variance of the residual
   write along each v_j);
3. ``stability``: mean pairwise cosine between the occurrences' rows of P;
4. ``alignment``: mean signed cos(h, u_1) (u_1 oriented as in :mod:`mi_massive.analyses.svd.linalg`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from jaxtyping import Float

from mi_massive.core.stats import bootstrap_d_ci  # noqa: F401 (the one bootstrap lives in core.stats)

METRICS = ("concentration", "asymmetry", "stability", "alignment")


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (returns (0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohens_d(x: Sequence[float], y: Sequence[float]) -> float:
    """(mean x - mean y) / sqrt((var x + var y) / 2), sample variances (ddof=1); nan if undefined."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    sd = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    return float((x.mean() - y.mean()) / sd) if sd > 0 else float("nan")


def compare_groups(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Welch t, Mann-Whitney U, Cohen's d (+ bootstrap CI) and AUC for group x vs group y."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    out: dict[str, Any] = {"n_x": len(x), "n_y": len(y), "mean_x": float(x.mean()) if len(x) else None,
                           "mean_y": float(y.mean()) if len(y) else None,
                           "median_x": float(np.median(x)) if len(x) else None,
                           "median_y": float(np.median(y)) if len(y) else None}
    if len(x) < 2 or len(y) < 2:
        return {**out, "welch_t": None, "welch_p": None, "mw_u": None, "mw_p": None, "d": None, "d_ci95": None,
                "auc": None}
    t = stats.ttest_ind(x, y, equal_var=False)
    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    lo, hi = bootstrap_d_ci(x, y, n_boot=n_boot, seed=seed)
    return {**out, "welch_t": float(t.statistic), "welch_p": float(t.pvalue), "welch_df": float(t.df),
            "mw_u": float(mw.statistic), "mw_p": float(mw.pvalue), "d": cohens_d(x, y), "d_ci95": [lo, hi],
            "auc": float(mw.statistic) / (len(x) * len(y))}


def describe_effect(cmp: dict[str, Any], name: str, x_label: str = "function", y_label: str = "content") -> str:
    """One honest sentence about a group comparison (size first, then significance)."""
    d, ci = cmp.get("d"), cmp.get("d_ci95")
    if d is None or not math.isfinite(d):
        return f"{name}: too few word types to compare ({cmp['n_x']} {x_label}, {cmp['n_y']} {y_label})."
    size = "negligible" if abs(d) < 0.2 else "small" if abs(d) < 0.5 else "medium" if abs(d) < 0.8 else "large"
    crosses = ci[0] <= 0 <= ci[1]
    return (f"{name}: {x_label} {cmp['mean_x']:.4g} vs {y_label} {cmp['mean_y']:.4g}; d = {d:.2f} "
            f"[{ci[0]:.2f}, {ci[1]:.2f}] ({size}{', CI includes 0' if crosses else ''}); Welch p = {cmp['welch_p']:.3g}, "
            f"Mann-Whitney p = {cmp['mw_p']:.3g}, AUC = {cmp['auc']:.2f} (n = {cmp['n_x']} vs {cmp['n_y']} types).")


def top_share(variances: Float[torch.Tensor, "k"], m: int = 3) -> float:
    """Fraction of the summed variance in the ``m`` largest entries."""
    v = variances.double()
    total = float(v.sum())
    return float(v.topk(min(m, len(v))).values.sum()) / total if total > 0 else float("nan")


def mean_pairwise_cosine(P: Float[torch.Tensor, "n k"]) -> float:
    """Mean cosine over the n(n-1) ordered pairs of distinct rows of P (nan for n < 2)."""
    n = P.shape[0]
    if n < 2:
        return float("nan")
    unit = P.double() / P.double().norm(dim=1, keepdim=True).clamp_min(1e-300)
    s = unit.sum(0)
    return float((s @ s - n) / (n * (n - 1)))


def word_metrics(h: Float[torch.Tensor, "occ d_mlp"], U_k: Float[torch.Tensor, "d_mlp k"],
                 S_k: Float[torch.Tensor, "k"], u1: Float[torch.Tensor, "d_mlp"]) -> dict[str, float]:
    """The four seed metrics for one word type's occurrences (see the module docstring)."""
    P = h.double() @ U_k.double()
    var_left = P.var(0, unbiased=True)
    var_right = var_left * S_k.double() ** 2
    left, right = top_share(var_left), top_share(var_right)
    cos = (h.double() @ u1.double()) / (h.double().norm(dim=1) * u1.double().norm()).clamp_min(1e-300)
    return {"concentration": left, "asymmetry": left / right if right > 0 else float("nan"),
            "stability": mean_pairwise_cosine(P), "alignment": float(cos.mean())}
