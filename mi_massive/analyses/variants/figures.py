"""The comparison figure: top-1 |h| per layer, attention to the first token / bias slot, and eval loss.

>>> from mi_massive.analyses.variants.record import VariantComparison, VariantReport
>>> v = VariantReport(name="baseline", spec={}, path=None, eval_loss=5.0, eval_ppl=148.4, train={},
...     top1_per_layer=[3.0, 2.0], median_per_layer=[0.5, 0.4], n_massive=0, massive_dims=[],
...     massive_positions={}, max_top1=3.0, attn_first_token=[0.2, 0.3], attn_bias_slot=[], seconds_eval=0.1)
>>> fig = figures(VariantComparison(provenance={"base": "toy-llama"}, reports=[v]))["compare"]
>>> fig.layout.title.text
'toy-llama: variants'
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_massive.core.html import fmt, integer_axis, log_axis


def comparison_figure(comparison, *, title: str | None = None) -> go.Figure:
    """Three panels, one trace per variant of a :class:`~mi_massive.analyses.variants.record.VariantComparison`
    (or a list of its :class:`~mi_massive.analyses.variants.record.VariantReport`).

    Left: mean top-1 |h| of each block output (log scale). Middle: mean attention of queries q >= 1 to
    token position 0 (solid) and to the KV-bias slot (dotted). Right: evaluation loss (nats/token).
    The title defaults to ``"<base>: variants"``.
    """
    reports: Sequence = getattr(comparison, "reports", comparison)
    if title is None:
        base = (getattr(comparison, "provenance", None) or {}).get("base")
        title = f"{base}: variants" if base else "variants"
    fig = make_subplots(rows=1, cols=3, column_widths=[0.4, 0.4, 0.2], horizontal_spacing=0.08,
                        subplot_titles=("top-1 |h| per block<br>(mean over windows)",
                                        "attention to position 0 (solid)<br>/ to the bias slot (dotted)",
                                        "eval loss"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, r in enumerate(reports):
        color = palette[i % len(palette)]
        x = list(range(len(r.top1_per_layer)))
        fig.add_trace(go.Scatter(x=x, y=r.top1_per_layer, mode="lines+markers", name=r.name, legendgroup=r.name,
                                 line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=r.attn_first_token, mode="lines+markers", name=f"{r.name}: pos 0",
                                 legendgroup=r.name, showlegend=False, line=dict(color=color)), row=1, col=2)
        if r.attn_bias_slot:
            fig.add_trace(go.Scatter(x=x, y=r.attn_bias_slot, mode="lines+markers", name=f"{r.name}: slot",
                                     legendgroup=r.name, showlegend=False, line=dict(color=color, dash="dot")),
                          row=1, col=2)
        fig.add_trace(go.Bar(x=[r.name], y=[r.eval_loss], marker_color=color, legendgroup=r.name, showlegend=False,
                             text=[fmt(r.eval_loss)], textposition="outside", cliponaxis=False), row=1, col=3)
    top = [v for r in reports for v in r.top1_per_layer]
    fig.update_yaxes(**log_axis(top, title_text="top-1 |h| (log scale)"), row=1, col=1)
    fig.update_yaxes(range=[0, 1], title_text="attention mass", row=1, col=2)
    losses = [r.eval_loss for r in reports if r.eval_loss is not None]
    fig.update_yaxes(title_text="nats/token", range=[0, 1.2 * max(losses)] if losses else None, row=1, col=3)
    n_blocks = max((len(r.top1_per_layer) for r in reports), default=0)
    fig.update_xaxes(**integer_axis(n_blocks, title_text="block (0-based)"), row=1, col=1)
    fig.update_xaxes(**integer_axis(n_blocks, title_text="block (0-based)"), row=1, col=2)
    fig.update_xaxes(title_text="variant", row=1, col=3)
    fig.update_layout(title=title, template="plotly_white", height=520, margin=dict(t=120),
                      legend=dict(title="variant"))
    return fig


def figures(comparison) -> dict[str, go.Figure]:
    """{file stem: figure} of a :class:`~mi_massive.analyses.variants.record.VariantComparison`."""
    return {"compare": comparison_figure(comparison)}
