"""MLP internals around a massive dim (pure functions of captured tensors; spec §3.6, §4 "writers").

Layout (TransformerLens, raw weights): ``hook_mlp_out[t] = hook_post[t] @ W_out + b_out`` with
``W_out`` [d_mlp, d_model]. The contribution of neuron n to residual dim d at token t is therefore
``c[t, n] = hook_post[t, n] * W_out[n, d]`` (residual units), and ``sum_n c[t, n] + b_out[d]`` equals
``hook_mlp_out[t, d]`` exactly (up to float rounding). This is the correct version of the column
that LUDAN's Exp2C read with the wrong orientation (spec §3.6).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from einops import einsum
from jaxtyping import Bool, Float


def checkpoint_stats(x: Float[torch.Tensor, "tok width"], is_massive: Bool[torch.Tensor, "tok"], *,
                     k: int = 10) -> dict[str, Any]:
    """|x| statistics of one MLP checkpoint over real tokens (rows), split by massive vs ordinary tokens.

    ``max``: largest |x| (with its token row and unit = dim or neuron); ``median``: median |x| over all
    entries; ``ratio`` = max / median; ``top_units``: the ``k`` units with the largest max over tokens
    (unit, max |x|, signed value there, whether that token is massive); ``massive_token_max`` /
    ``ordinary_max``: max |x| over the massive / ordinary tokens (None when there are none).
    """
    a = x.abs()
    flat_idx = int(a.argmax())
    row, unit = divmod(flat_idx, a.shape[1])
    med = float(a.flatten().median())  # lower median; with >1000 entries the difference is negligible
    per_unit, where = a.max(0)
    top = per_unit.topk(min(k, a.shape[1]))
    mx = float(a.max())
    return {
        "max": mx, "max_token_row": row, "max_unit": unit, "median": med, "ratio": mx / max(med, 1e-30),
        "top_units": [{"unit": int(u), "max_abs": float(v), "signed": float(x[where[u], u]),
                       "at_massive_token": bool(is_massive[where[u]])} for v, u in zip(top.values, top.indices)],
        "massive_token_max": float(a[is_massive].max()) if is_massive.any() else None,
        "ordinary_max": float(a[~is_massive].max()) if (~is_massive).any() else None,
        "ordinary_median": float(a[~is_massive].flatten().median()) if (~is_massive).any() else None,
    }


def neuron_contributions(post: Float[torch.Tensor, "tok d_mlp"], w_out_col: Float[torch.Tensor, "d_mlp"]) -> Float[torch.Tensor, "tok d_mlp"]:
    """c[t, n] = post[t, n] * W_out[n, d]: what neuron n writes into residual dim d at token t."""
    return einsum(post, w_out_col, "tok n, n -> tok n")


def carriers(contrib: Float[torch.Tensor, "d_mlp"], fractions: Sequence[float] = (0.5, 0.9)) -> dict[str, Any]:
    """How many neurons carry a given fraction of one token's total contribution S = sum_n c[n].

    Neurons are sorted by their contribution in the direction of S (largest first); the count for
    fraction f is the smallest m with cumulative sum >= f * S. Cancellation is reported separately:
    ``positive``/``negative`` are the sums of the same-sign and opposite-sign parts (relative to S).
    """
    total = float(contrib.sum())
    sign = 1.0 if total >= 0 else -1.0
    aligned = (contrib * sign).double()
    order = torch.argsort(aligned, descending=True)
    cum = torch.cumsum(aligned[order], 0)
    out: dict[str, Any] = {"total": total, "positive": float(aligned.clamp_min(0).sum()) * sign,
                           "negative": float(aligned.clamp_max(0).sum()) * sign}
    for f in fractions:
        hit = torch.nonzero(cum >= f * abs(total))
        out[f"n_{int(round(f * 100))}"] = int(hit[0]) + 1 if len(hit) else None
    out["order"] = order.tolist()
    return out


def contribution_summary(contrib: Float[torch.Tensor, "tok d_mlp"], is_massive: Bool[torch.Tensor, "tok"],
                         post: Float[torch.Tensor, "tok d_mlp"], w_out_col: Float[torch.Tensor, "d_mlp"], *,
                         extra: dict[str, Float[torch.Tensor, "tok d_mlp"]] | None = None,
                         k: int = 20) -> dict[str, Any]:
    """Per-neuron contributions at the massive tokens vs ordinary tokens.

    ``top_neurons``: the ``k`` neurons with the largest mean contribution over the massive tokens,
    each with that mean, the ordinary tokens' mean and max |c|, the activation hook_post at the
    massive tokens (mean) and over ordinary tokens (mean, max |.|), W_out[n, d], and the mean of every
    tensor in ``extra`` (e.g. gate and up pre-activations) at the massive tokens.
    ``n_neurons_50`` / ``n_neurons_90``: the median over massive tokens of :func:`carriers` counts.
    """
    if not is_massive.any():
        raise ValueError("no massive token to decompose")
    cm, co = contrib[is_massive], contrib[~is_massive]
    mean_m = cm.mean(0)
    top = torch.argsort(mean_m, descending=bool(mean_m.sum() >= 0))[:k]
    per_tok = [carriers(row) for row in cm]
    n50 = [c["n_50"] for c in per_tok]
    n90 = [c["n_90"] for c in per_tok]
    rows = []
    for n in top.tolist():
        row = {"neuron": n, "massive": float(mean_m[n]), "w_out": float(w_out_col[n]),
               "post_massive": float(post[is_massive, n].mean())}
        if len(co):
            row.update(ordinary_mean=float(co[:, n].mean()), ordinary_max_abs=float(co[:, n].abs().max()),
                       post_ordinary_mean=float(post[~is_massive, n].mean()),
                       post_ordinary_max_abs=float(post[~is_massive, n].abs().max()))
        else:
            row.update(ordinary_mean=None, ordinary_max_abs=None, post_ordinary_mean=None, post_ordinary_max_abs=None)
        for name, t in (extra or {}).items():
            row[f"{name}_massive"] = float(t[is_massive, n].mean())
            row[f"{name}_ordinary_max_abs"] = float(t[~is_massive, n].abs().max()) if len(co) else None
        rows.append(row)
    totals_m = cm.sum(1)
    totals_o = co.sum(1) if len(co) else torch.zeros(0)
    return {
        "n_massive_tokens": int(is_massive.sum()), "n_ordinary_tokens": int((~is_massive).sum()),
        "massive_total_mean": float(totals_m.mean()),
        "massive_positive_mean": float(np.mean([c["positive"] for c in per_tok])),
        "massive_negative_mean": float(np.mean([c["negative"] for c in per_tok])),
        "ordinary_total_mean": float(totals_o.mean()) if len(totals_o) else None,
        "ordinary_total_max_abs": float(totals_o.abs().max()) if len(totals_o) else None,
        "n_neurons_50": int(np.median(n50)), "n_neurons_90": int(np.median(n90)),
        "n_neurons_50_range": [min(n50), max(n50)], "n_neurons_90_range": [min(n90), max(n90)],
        "top_neurons": rows,
    }
