"""Figures of an ablation (plotly; saved with :func:`mi_massive.core.html.save_figure`).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> res = mm.ablate(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), mlps=[1], n_null=0,
...                 progress=False)
>>> list(figures(res))
['ablation_top1', 'ablation_p0_d5']
"""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.ablate.record import AblationResult
from mi_massive.core.html import integer_axis


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
    fig.add_hline(y=0, line=dict(color="#999", dash="dot"))
    fig.update_layout(title=f"Change of {metric} under ablation (ablated - baseline; 95% bootstrap CI, shaded: null 95%)",
                      xaxis=integer_axis(len({e.layer for c in res.conditions for e in c.effects}), title="block (0-based)"),
                      yaxis_title=f"change of {metric} (residual units)",
                      template="plotly_white")
    return fig


def figures(res: AblationResult) -> dict[str, go.Figure]:
    """By file stem: ``ablation_top1`` and ``ablation_p{pos}_d{dim}`` per tracked entry (:func:`ablation_figure`)."""
    out = {"ablation_top1": ablation_figure(res, "top1")}
    for p, d in res.tracked:
        out[f"ablation_p{p}_d{d}"] = ablation_figure(res, f"entry p{p} d{d}")
    return out
