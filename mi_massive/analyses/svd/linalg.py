"""SVD of an MLP output projection and regressions on its top input direction (pure functions; spec §3.7, §4).

Orientation: ``out = h @ W_out`` with ``W_out`` [d_mlp, d_model] = U diag(S) V^T (thin SVD).
Input directions (in neuron space, what a token's ``hook_post`` is compared with) are the columns of
U; output directions (in the residual stream) are the rows of V^T. Singular vectors have arbitrary
signs; we flip each pair (u_k, v_k) together so that V^T[k, d] >= 0 for the dim d under study, so
"h . u_1 > 0" means "pushes dim d up through component 1".

Exactly, y_d(h) := (h @ W_out)[d] = sum_k S_k V^T[k, d] (h . u_k). Regressing y_d on h . u_1 therefore
restates the matrix whenever column d of W_out is (close to) rank-1 along v_1: that is what
:func:`rank1_column_share` measures, and the regression notes say so plainly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from mi_massive.core.stats import r2_bootstrap_ci  # noqa: F401 (the one bootstrap lives in core.stats)

TAUTOLOGY_SHARE = 0.9  # rank-1 share of W_out[:, d] above which a fit on h . u_1 restates the matrix


@dataclass(frozen=True)
class OrientedSvd:
    """W = U diag(S) Vt with signs fixed so that ``Vt[k, dim] >= 0`` for every k."""

    U: Float[torch.Tensor, "d_mlp r"]
    S: Float[torch.Tensor, "r"]
    Vt: Float[torch.Tensor, "r d_model"]
    dim: int


def oriented_svd(w_out: Float[torch.Tensor, "d_mlp d_model"], dim: int) -> OrientedSvd:
    """Thin SVD of ``w_out`` (float64) with the sign convention V^T[k, dim] >= 0."""
    U, S, Vt = torch.linalg.svd(w_out.double(), full_matrices=False)
    flip = torch.where(Vt[:, dim] < 0, -1.0, 1.0).to(U.dtype)
    return OrientedSvd(U=U * flip[None, :], S=S, Vt=Vt * flip[:, None], dim=dim)


def rank1_column_share(svd: OrientedSvd) -> float:
    """(S_1 V^T[0, d])^2 / ||W[:, d]||^2: the fraction of column d's squared norm carried by component 1."""
    col = svd.S * svd.Vt[:, svd.dim]
    return float(col[0] ** 2 / (col ** 2).sum())


def spectrum_stats(svd: OrientedSvd, top: int = 10) -> dict[str, Any]:
    """sigma_1, sigma_2, their ratio, sigma_1^2 / sum sigma^2, V^T[0, d], the rank-1 share of column d,
    and the components writing most into d (by |S_k V^T[k, d]|)."""
    S = svd.S
    col = S * svd.Vt[:, svd.dim]
    order = torch.argsort(col.abs(), descending=True)[:top]
    return {
        "sigma1": float(S[0]), "sigma2": float(S[1]) if len(S) > 1 else None,
        "sigma_ratio": float(S[0] / S[1]) if len(S) > 1 else None,
        "sigma1_sq_share": float(S[0] ** 2 / (S ** 2).sum()),
        "vt0_dim": float(svd.Vt[0, svd.dim]), "vt0_dim_rank": int((svd.Vt[0].abs() > abs(svd.Vt[0, svd.dim])).sum()) + 1,
        "rank1_column_share": rank1_column_share(svd),
        "top_components_for_dim": [{"k": int(k), "sigma": float(S[k]), "vt_k_dim": float(svd.Vt[k, svd.dim]),
                                    "weight": float(col[k])} for k in order],
        "singular_values": S.tolist(),
    }


def cosine(h: Float[torch.Tensor, "tok n"], u: Float[torch.Tensor, "n"]) -> Float[torch.Tensor, "tok"]:
    """Signed cosine between each row of ``h`` and ``u`` (0 for a zero row)."""
    h64, u64 = h.double(), u.double()
    return (h64 @ u64) / (h64.norm(dim=1) * u64.norm()).clamp_min(1e-300)


@dataclass(frozen=True)
class OlsFit:
    """y = slope * x + intercept by least squares; ``r2`` = 1 - SS_res / SS_tot (None when y or x is constant)."""

    slope: float | None
    intercept: float | None
    r2: float | None
    n: int


def ols(x: np.ndarray, y: np.ndarray) -> OlsFit:
    """Ordinary least squares of ``y`` on ``x`` with an intercept (float64)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return OlsFit(None, None, None, n)
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    ss_tot = ((y - ym) ** 2).sum()
    r2 = None if ss_tot == 0 else float(1 - ((y - (slope * x + intercept)) ** 2).sum() / ss_tot)
    return OlsFit(slope, intercept, r2, n)


def input_rank1_share(h: Float[torch.Tensor, "tok n"]) -> float:
    """s_1^2 / sum s^2 of the (uncentred) token-by-unit matrix: 1.0 when every input is a multiple of one vector."""
    s = torch.linalg.svdvals(h.double())
    return float(s[0] ** 2 / (s ** 2).sum()) if float((s ** 2).sum()) > 0 else float("nan")


def regression_report(x: np.ndarray, y: np.ndarray, *, expected_slope: float, column_share: float,
                      n_distinct: int, label: str, n_boot: int = 1000, seed: int = 0,
                      input_share: float | None = None) -> dict[str, Any]:
    """OLS of y on x = h . u_1 for one position class, its R^2 CI, and a plain-language verdict.

    ``expected_slope`` = S_1 V^T[0, d]: the slope the matrix alone implies. ``n_distinct``: number of
    distinct inputs (e.g. 1 when position 0 is always BOS). ``input_share``: :func:`input_rank1_share` of
    the inputs. The verdict says when the fit has no variation to explain, when it is implied by the
    inputs lying on one direction (then y is linear in *any* projection), or when it is near-tautological
    because column d of W_out is ~rank-1 along v_1.
    """
    fit = ols(x, y)
    ci = r2_bootstrap_ci(x, y, n_boot=n_boot, seed=seed) if fit.r2 is not None else None
    x_a, y_a = np.asarray(x, float), np.asarray(y, float)
    rank1_part = None
    if len(y_a) > 1 and np.var(y_a) > 0:
        rank1_part = float(1 - np.var(y_a - expected_slope * x_a) / np.var(y_a))
    if n_distinct >= 3 and fit.r2 is None:
        verdict = (f"{label}: y or h . u_1 is constant over these {fit.n} tokens (y = {np.mean(y_a):.4g}); "
                   f"there is nothing to regress, so no R^2 is reported.")
    elif n_distinct < 3 or fit.r2 is None:
        verdict = (f"{label}: only {n_distinct} distinct input(s) ({fit.n} points); there is no variation to regress, "
                   f"so no R^2 is reported. The value is a single point: y = {np.mean(y_a):.4g} at "
                   f"h . u_1 = {np.mean(x_a):.4g} (matrix slope {expected_slope:.4g}).")
    elif input_share is not None and input_share >= 0.99:
        verdict = (f"{label}: R^2 = {fit.r2:.4f}, but near-tautological: {100 * input_share:.2f}% of the inputs' energy "
                   f"lies on one direction (the inputs are essentially one activation pattern scaled), so y is linear "
                   f"in h . u for any fixed u; fitted slope {fit.slope:.4g} vs the matrix's rank-1 slope "
                   f"{expected_slope:.4g}. This says the massive token always uses the same neurons, not that u_1 is "
                   f"the mechanism.")
    elif column_share >= TAUTOLOGY_SHARE:
        verdict = (f"{label}: R^2 = {fit.r2:.3f}, but this is near-tautological: {100 * column_share:.1f}% of "
                   f"||W_out[:, d]||^2 lies on component 1, so y ~ S_1 V^T[0, d] (h . u_1) for any input; the fit "
                   f"restates the weight matrix and is not evidence about the mechanism.")
    else:
        verdict = (f"{label}: R^2 = {fit.r2:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "") +
                   f"; component 1 carries {100 * column_share:.1f}% of ||W_out[:, d]||^2, so the fit is not implied "
                   f"by the matrix alone; the exact rank-1 term explains {100 * (rank1_part or 0):.1f}% of var(y).")
    return {"slope": fit.slope, "intercept": fit.intercept, "r2": fit.r2, "r2_ci95": list(ci) if ci else None,
            "n": fit.n, "n_distinct_inputs": n_distinct, "expected_slope": expected_slope,
            "rank1_term_var_share": rank1_part, "input_rank1_share": input_share, "verdict": verdict}


def sample_points(x: np.ndarray, y: np.ndarray, limit: int, seed: int = 0) -> dict[str, list[float]]:
    """At most ``limit`` (x, y) pairs for plotting, drawn without replacement."""
    idx = np.arange(len(x))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    return {"proj": [float(v) for v in np.asarray(x)[idx]], "y": [float(v) for v in np.asarray(y)[idx]]}

