"""Figures of the single-component ablation sweep (plotly).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> res = mm.sweep(model, mm.text_corpus(model, "The cat sat."), [(1, 0, 5)], mlps=True, progress=False)
>>> list(figures(res))
['sweep_heads', 'sweep_mlps']
"""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.sweep.record import SweepResult
from mi_massive.core.html import fmt


def _title(res: SweepResult, metric: int) -> tuple[str, float]:
    base = sum(row[metric] for row in res.baseline) / max(len(res.baseline), 1)
    return res.metric_names[metric], base


def head_heatmap(res: SweepResult, metric: int = 0) -> go.Figure:
    """Layer x head: mean effect (ablated - baseline) of ablating that one head on metric ``metric``."""
    name, base = _title(res, metric)
    z = [[h[metric] for h in heads] for heads in res.effect]
    n_heads = len(z[0]) if z else 0
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"H{h}" for h in range(n_heads)], y=[f"L{l}" for l in range(len(z))], colorscale="RdBu", zmid=0,
        colorbar=dict(title=dict(text=f"effect on {name}<br>(ablated - baseline,<br>mean over sequences)")),
        hovertemplate="layer %{y}, head %{x}<br>effect %{z:,.6~r}<extra></extra>"))
    fig.update_layout(title=f"Single-head {res.mode} ablation: effect on {name} (baseline {fmt(base)})",
                      xaxis_title="head", yaxis_title="layer (block)", template="plotly_white",
                      yaxis=dict(autorange="reversed"), height=max(450, 18 * len(z) + 150))
    return fig


def mlp_bars(res: SweepResult, metric: int = 0) -> go.Figure:
    """One bar per layer: mean effect of ablating that layer's MLP on metric ``metric``."""
    name, base = _title(res, metric)
    eff = [e[metric] for e in res.mlp_effect or []]
    fig = go.Figure(go.Bar(x=[f"MLP {l}" for l in range(len(eff))], y=eff, marker_color="#4c72b0",
                           hovertemplate="%{x}<br>effect %{y:,.6~r}<extra></extra>"))
    fig.update_layout(title=f"Single-MLP {res.mode} ablation: effect on {name} (baseline {fmt(base)})",
                      xaxis_title="ablated MLP (block)", yaxis_title=f"effect on {name} (ablated - baseline)",
                      template="plotly_white")
    return fig


def figures(res: SweepResult) -> dict[str, go.Figure]:
    """By file stem: ``sweep_heads`` (:func:`head_heatmap`) and, with MLPs, ``sweep_mlps`` (:func:`mlp_bars`)."""
    out = {"sweep_heads": head_heatmap(res)}
    if res.mlp_effect is not None:
        out["sweep_mlps"] = mlp_bars(res)
    return out
