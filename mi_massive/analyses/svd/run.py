"""SVD of block L's W_out and the alignment of each token's MLP activation with its top input direction u_1."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD
from mi_massive.analyses.svd.linalg import (cosine, input_rank1_share, oriented_svd, regression_report, sample_points,
                                     spectrum_stats)
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.analyses.mlp.run import b_out, capture_layer, mlp_output_hook, resolve_dim, resolve_layer
from mi_massive.core.provenance import provenance
from mi_massive.analyses.svd.record import Alignment, Regression, Spectrum, SvdResult
from mi_massive.core.names import OTHER, START, act_name
from mi_massive.core.loading.vit import refuse_vision


def svd_analysis(model, corpus: Corpus, *, layer: int | None = None, dim: int | None = None, n_boot: int = 1000,
                 seed: int = 0, batch_size: int = 8, max_points: int = 3000, abs_threshold: float = ABS_THRESHOLD,
                 rel_threshold: float = REL_THRESHOLD, options: dict[str, Any] | None = None) -> SvdResult:
    """Spectrum of ``W_out[layer]`` (oriented for ``dim``), token alignment with u_1 and the per-class regression
    of y = mlp_out[t, dim] - b_out[dim] on h_t . u_1 (start = position 0, other = later positions).

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> r = svd(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), n_boot=20)
    >>> r.layer, r.dim, r.spectrum.vt0_dim >= 0
    (1, 5, True)
    >>> r.regression.fits["start"].r2 is None  # position 0 is always BOS: one input, nothing to regress
    True

    ``layer`` (0-based) defaults to the first massive block, ``dim`` to the largest |block output| dim
    there. Singular values are in W_out's units; h . u_1 in neuron-activation units; y in residual
    units. ``n_boot`` bootstrap resamples give the R^2 CI; ``max_points`` (h . u_1, y) pairs per class
    are kept for the figure.
    """
    refuse_vision(model, "svd", "it reads the MLP's W_out and hidden activations")
    L = resolve_layer(model, corpus, layer, batch_size=batch_size, abs_threshold=abs_threshold,
                      rel_threshold=rel_threshold)
    post_name = act_name("post", L)
    out_name, post_norm_note = mlp_output_hook(model, L)  # the raw MLP output where a post-MLP norm follows
    cap = capture_layer(model, corpus, L, [post_name, out_name], batch_size=batch_size,
                        abs_threshold=abs_threshold, rel_threshold=rel_threshold)
    d = resolve_dim(cap, dim)
    svd = oriented_svd(model.W_out[L].detach(), d)
    spec = spectrum_stats(svd)
    h = cap.acts[post_name]
    y = (cap.acts[out_name][:, d] - b_out(model, L)[d]).double().numpy()
    u1 = svd.U[:, 0]
    proj = (h.double() @ u1).numpy()
    cos = cosine(h, u1).numpy()
    massive = cap.massive[:, d].numpy()
    start = (cap.pos == 0).numpy()
    alignment: dict[str, Any] = {}
    fits: dict[str, Any] = {}
    points: dict[str, Any] = {}
    tok = model.tokenizer
    for cls, sel in ((START, start), (OTHER, ~start)):
        if not sel.any():
            continue
        n_distinct = len({tuple(r) for r in np.round(h[torch.from_numpy(sel)].numpy(), 5).tolist()}) if sel.sum() <= 5000 \
            else int(sel.sum())
        alignment[cls] = {"n": int(sel.sum()), "cos_mean": float(cos[sel].mean()), "cos_std": float(cos[sel].std()),
                          "proj_mean": float(proj[sel].mean()), "proj_max": float(proj[sel].max()),
                          "n_massive": int(massive[sel].sum())}
        fits[cls] = regression_report(proj[sel], y[sel], expected_slope=spec["sigma1"] * spec["vt0_dim"],
                                      column_share=spec["rank1_column_share"], n_distinct=n_distinct,
                                      label=f"{cls} tokens", n_boot=n_boot, seed=seed,
                                      input_share=input_rank1_share(h[torch.from_numpy(sel)]))
        points[cls] = sample_points(proj[sel], y[sel], max_points, seed)
    order = np.argsort(-cos)
    top_tokens = [{"token": tok.decode([int(cap.token_id[i])]), "position": int(cap.pos[i]), "cos": float(cos[i]),
                   "proj": float(proj[i]), "y": float(y[i])} for i in order[:15]]
    alignment["top_tokens_by_cos"] = top_tokens
    if massive.any():
        alignment["massive_tokens"] = {"cos_mean": float(cos[massive].mean()), "proj_mean": float(proj[massive].mean()),
                                       "y_mean": float(y[massive].mean())}
    notes = [
        "Orientation: out = h @ W_out, W_out [d_mlp, d_model] = U S V^T; u_1 = U[:, 0] (neuron space), "
        f"v_1 = V^T[0] (residual space); signs fixed so that V^T[k, {d}] >= 0.",
        f"sigma_1^2 / sum sigma^2 = {100 * spec['sigma1_sq_share']:.2f}%: "
        + ("W_out is not dominated by one direction." if spec["sigma1_sq_share"] < 0.5 else "one direction dominates W_out."),
        f"Column {d} of W_out: {100 * spec['rank1_column_share']:.1f}% of its squared norm is on component 1.",
    ] + [f["verdict"] for f in fits.values()] + ([post_norm_note] if post_norm_note else [])
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "n_boot": n_boot, "seed": seed,
            **(options or {})}
    target = "mlp_out" if post_norm_note is None else "raw mlp output (ln2_post.hook_in)"
    regression = {"fits": fits, "points": points, "target": f"{target}[t, {d}] - b_out[{d}] (signed)",
                  "regressor": "hook_post[t] . u_1"}
    return SvdResult(provenance=provenance(model, corpus, seed=seed, options=opts), layer=L, dim=d,
                     spectrum=Spectrum.from_dict(spec), alignment=Alignment.from_dict(alignment),
                     regression=Regression.from_dict(regression), notes=notes)


svd = svd_analysis
