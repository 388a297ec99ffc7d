"""Figures of the mechanism analyses: MLP activation flow, top neurons, SVD spectrum, token alignment,
intervention perplexities and regeneration. Each function takes a result record and returns a plotly figure."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def word_metric_figure(result) -> go.Figure:
    """Box plots of the four per-word-type metrics, function vs content words."""
    per_word = result.words.get("per_word", [])
    metrics = result.words.get("metric_names", [])
    fig = make_subplots(rows=1, cols=max(1, len(metrics)), subplot_titles=metrics)
    for i, m in enumerate(metrics):
        for group in ("function", "content"):
            vals = [w[m] for w in per_word if w["group"] == group and w.get(m) is not None]
            fig.add_trace(go.Box(y=vals, name=group, showlegend=i == 0), row=1, col=i + 1)
    fig.update_layout(title=f"block {result.layer}: function vs content word types", template="plotly_white")
    return fig
