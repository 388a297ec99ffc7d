"""Figures of the causal experiments (plotly; saved with :func:`mi_massive.core.html.save_figure`)."""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.heads.record import HeadScores


def head_heatmap(scores: HeadScores, by: str = "first") -> go.Figure:
    """Layer x head heatmap of the mean sink score (probability, 0..1)."""
    z = scores.matrix(by)
    what = "position 0" if by == "first" else "massive positions"
    fig = go.Figure(go.Heatmap(z=z, x=list(range(scores.n_heads)), y=list(range(scores.n_layers)),
                               colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="attention")))
    fig.update_layout(title=f"Mean attention from queries q >= {scores.min_query} to {what}",
                      xaxis_title="head", yaxis_title="layer (0-based)", template="plotly_white")
    return fig
