"""Figures of the causal experiments (plotly; saved with :func:`mi_massive.views.html.save_figure`)."""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.results.causal import AblationResult, AttributionResult, HeadScores, PatchingResult


def head_heatmap(scores: HeadScores, by: str = "first") -> go.Figure:
    """Layer x head heatmap of the mean sink score (probability, 0..1)."""
    z = scores.matrix(by)
    what = "position 0" if by == "first" else "massive positions"
    fig = go.Figure(go.Heatmap(z=z, x=list(range(scores.n_heads)), y=list(range(scores.n_layers)),
                               colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="attention")))
    fig.update_layout(title=f"Mean attention from queries q >= {scores.min_query} to {what}",
                      xaxis_title="head", yaxis_title="layer (0-based)", template="plotly_white")
    return fig


def attribution_bars(res: AttributionResult, k: int = 15) -> go.Figure:
    """The k largest additive terms of the entry (signed, residual units) and the residual itself."""
    top = sorted(res.terms(), key=lambda c: -abs(c.value))[:k]
    rest = res.total - sum(c.value for c in top)
    labels = [c.label for c in top] + ["all other terms", "residual"]
    values = [c.value for c in top] + [rest, res.residual]
    fig = go.Figure(go.Waterfall(x=labels, y=values, measure=["relative"] * (len(top) + 1) + ["total"]))
    fig.update_layout(title=f"Who writes h_{res.layer}[pos {res.position}, dim {res.dim}] = {res.residual:.1f} "
                            f"(sum error {res.rel_error:.1e})", yaxis_title="contribution (residual units)",
                      template="plotly_white")
    return fig


def ablation_figure(res: AblationResult, metric: str) -> go.Figure:
    """Per-layer mean change of ``metric`` per condition, with bootstrap CIs and the null's 95% band."""
    fig = go.Figure()
    for cond in res.conditions:
        eff = [e for e in cond.effects if e.metric == metric]
        x = [e.layer for e in eff]
        fig.add_trace(go.Scatter(x=x, y=[e.mean for e in eff], mode="lines+markers", name=cond.name,
                                 error_y=dict(type="data", array=[e.ci95[1] - e.mean for e in eff],
                                              arrayminus=[e.mean - e.ci95[0] for e in eff])))
        if eff and eff[0].null_ci95 is not None:
            fig.add_trace(go.Scatter(x=x + x[::-1], y=[e.null_ci95[1] for e in eff] + [e.null_ci95[0] for e in eff][::-1],
                                     fill="toself", opacity=0.2, line=dict(width=0), name=f"{cond.name}: null 95%"))
    fig.update_layout(title=f"Change of {metric} under ablation (ablated - baseline)", xaxis_title="layer",
                      yaxis_title="change", template="plotly_white")
    return fig


def patching_figure(res: PatchingResult, component: str) -> go.Figure:
    """Normalised patching grid: 1 = the clean metric restored, 0 = corrupted value."""
    z = res.normalised[component]
    x = res.corrupted_tokens if component != "head" else list(range(len(z[0])))
    fig = go.Figure(go.Heatmap(z=z, x=[f"{i}:{t}" for i, t in enumerate(x)] if component != "head" else x,
                               colorscale="RdBu", zmid=0))
    fig.update_layout(title=f"Patching {component} (metric {res.metric}; clean {res.clean:.3g}, corrupted "
                            f"{res.corrupted:.3g})", xaxis_title="position" if component != "head" else "head",
                      yaxis_title="layer", template="plotly_white")
    return fig
