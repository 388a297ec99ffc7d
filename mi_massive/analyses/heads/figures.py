"""Figures of head sink scores (plotly; saved with :func:`mi_massive.core.html.save_figure`).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> scores = mm.heads(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)
>>> list(figures(scores))
['heads_first', 'heads_massive']
"""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.heads.record import HeadScores
from mi_massive.core.html import integer_axis


def head_heatmap(scores: HeadScores, by: str = "first") -> go.Figure:
    """Layer x head heatmap of the mean sink score (probability, 0..1)."""
    z = scores.matrix(by)
    what = "position 0" if by == "first" else "massive positions"
    fig = go.Figure(go.Heatmap(z=z, x=list(range(scores.n_heads)), y=list(range(scores.n_layers)),
                               colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="attention")))
    fig.update_layout(title=f"Mean attention from queries q >= {scores.min_query} to {what}",
                      xaxis=dict(title="head", dtick=1), yaxis=integer_axis(scores.n_layers, title="layer (0-based)"),
                      template="plotly_white")
    return fig


def figures(scores: HeadScores) -> dict[str, go.Figure]:
    """By file stem: ``heads_first`` (attention to position 0) and, when any sequence has massive
    positions, ``heads_massive`` (attention to them)."""
    out = {"heads_first": head_heatmap(scores, "first")}
    if any(h.to_massive is not None for h in scores.heads):
        out["heads_massive"] = head_heatmap(scores, "massive")
    return out
