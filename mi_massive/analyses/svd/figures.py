"""Figures of ``mi-massive svd``: the singular spectrum of W_out and the per-class regression scatter.

>>> import mi_massive as mm
>>> from mi_massive.analyses.svd import svd
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = svd(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), n_boot=10)
>>> sorted(figures(r))
['svd_regression', 'svd_spectrum']
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_massive.core.names import POSITION_CLASSES


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def spectrum_figure(result) -> go.Figure:
    """Singular values of W_out (log y) with sigma_1/sigma_2 and the sigma_1^2 share in the title."""
    s = result.spectrum
    fig = go.Figure(go.Scatter(y=s.singular_values, mode="lines+markers", name="sigma_k"))
    fig.update_layout(title=f"block {result.layer} W_out: sigma1/sigma2 = {s.sigma_ratio:.2f}, "
                            f"sigma1^2 share = {100 * s.sigma1_sq_share:.2f}%, V^T[0, {result.dim}] = {s.vt0_dim:.3f}",
                      xaxis_title="k", yaxis_title="sigma_k", yaxis_type="log", template="plotly_white")
    return fig


def svd_regression_figure(result) -> go.Figure:
    """Scatter of y = mlp_out[:, dim] - b_out[dim] against h . u_1, one panel per position class."""
    reg = result.regression
    classes = [c for c in POSITION_CLASSES if c in reg.points]
    fig = make_subplots(rows=1, cols=max(1, len(classes)), subplot_titles=[
        f"{c}: R^2 = {reg.fits[c].r2 if reg.fits[c].r2 is not None else float('nan'):.3f}" for c in classes])
    for i, c in enumerate(classes):
        pts = reg.points[c]
        fig.add_trace(go.Scattergl(x=pts.proj, y=pts.y, mode="markers", marker=dict(size=3), name=c),
                      row=1, col=i + 1)
    fig.update_layout(title=f"block {result.layer}: y[{result.dim}] against h . u_1", template="plotly_white")
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of an :class:`~mi_massive.analyses.svd.record.SvdResult` (what the command writes)."""
    return {"svd_spectrum": spectrum_figure(result), "svd_regression": svd_regression_figure(result)}
