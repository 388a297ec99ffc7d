"""Figures of an attribution (plotly; saved with :func:`mi_massive.core.html.save_figure`).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> list(figures(mm.attribute(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), 1, 0, 5)))
['attribution']
"""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.attribute.record import AttributionResult
from mi_massive.core.html import fmt


def attribution_bars(res: AttributionResult, k: int = 15) -> go.Figure:
    """The k largest additive terms of the entry (signed, residual units) and the residual itself."""
    top = sorted(res.terms(), key=lambda c: -abs(c.value))[:k]
    rest = res.total - sum(c.value for c in top)
    labels = [c.label for c in top] + ["all other terms", "residual"]
    values = [c.value for c in top] + [rest, res.residual]
    fig = go.Figure(go.Waterfall(x=labels, y=values, measure=["relative"] * (len(top) + 1) + ["total"]))
    fig.update_layout(title=f"Who writes h_{res.layer}[pos {res.position}, dim {res.dim}] = {fmt(res.residual)} "
                            f"(relative sum error {fmt(res.rel_error)})", yaxis_title="contribution (residual units)",
                      xaxis_title="component (largest |contribution| first), then the rest and the total",
                      template="plotly_white", height=600, showlegend=False)
    return fig


def figures(res: AttributionResult) -> dict[str, go.Figure]:
    """By file stem: ``attribution`` (:func:`attribution_bars`)."""
    return {"attribution": attribution_bars(res)}
