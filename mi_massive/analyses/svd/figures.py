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

from mi_massive.core.html import fmt, log_axis
from mi_massive.core.names import POSITION_CLASSES


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def spectrum_figure(result) -> go.Figure:
    """Singular values of W_out (log y) with sigma_1/sigma_2 and the sigma_1^2 share in the title."""
    s = result.spectrum
    fig = go.Figure(go.Scatter(x=list(range(1, len(s.singular_values) + 1)), y=s.singular_values, mode="lines+markers",
                               name="sigma_k"))
    fig.update_layout(title=f"block {result.layer} W_out: sigma1/sigma2 = {fmt(s.sigma_ratio)}, "
                            f"sigma1^2 share = {fmt(100 * s.sigma1_sq_share)}%, V^T[0, {result.dim}] = {fmt(s.vt0_dim)}",
                      xaxis_title="k (singular values, largest first)",
                      yaxis=log_axis(s.singular_values, title="sigma_k (log scale)"), template="plotly_white")
    return fig


def svd_regression_figure(result) -> go.Figure:
    """Scatter of y = mlp_out[:, dim] - b_out[dim] against h . u_1, one panel per position class."""
    reg = result.regression
    classes = [c for c in POSITION_CLASSES if c in reg.points]
    fig = make_subplots(rows=1, cols=max(1, len(classes)), horizontal_spacing=0.08, subplot_titles=[
        f"{c}: R² = {fmt(reg.fits[c].r2) if reg.fits[c].r2 is not None else 'n/a'}" for c in classes])
    for i, c in enumerate(classes):
        pts = reg.points[c]
        fig.add_trace(go.Scattergl(x=pts.proj, y=pts.y, mode="markers", marker=dict(size=4), name=c,
                                   showlegend=False), row=1, col=i + 1)
        fig.update_xaxes(title_text="h · u_1", row=1, col=i + 1)
        fig.update_yaxes(title_text=f"y = mlp_out[:, {result.dim}] - b_out" if i == 0 else "y", row=1, col=i + 1)
    fig.update_layout(title=f"block {result.layer}: y[{result.dim}] against h · u_1, one panel per position class",
                      template="plotly_white", margin=dict(t=110))
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of an :class:`~mi_massive.analyses.svd.record.SvdResult` (what the command writes)."""
    return {"svd_spectrum": spectrum_figure(result), "svd_regression": svd_regression_figure(result)}
