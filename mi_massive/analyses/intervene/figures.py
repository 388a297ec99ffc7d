"""Figures of the mechanism analyses: MLP activation flow, top neurons, SVD spectrum, token alignment,
intervention perplexities and regeneration. Each function takes a result record and returns a plotly figure."""

from __future__ import annotations

import plotly.graph_objects as go


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def ppl_figure(result) -> go.Figure:
    """Perplexity per condition with bootstrap 95% CIs over chunks (log y)."""
    rows = result.table
    fig = go.Figure(go.Bar(
        x=[r["condition"] for r in rows], y=[r["ppl"] for r in rows],
        error_y=dict(type="data", array=[r["ci95"][1] - r["ppl"] for r in rows],
                     arrayminus=[r["ppl"] - r["ci95"][0] for r in rows]),
    ))
    fig.update_layout(title=f"{_model_name(result)}: perplexity under interventions at block {result.first_layer} "
                            f"(dims {result.dims})", yaxis_type="log", yaxis_title="perplexity",
                      template="plotly_white")
    return fig


def regeneration_figure(result) -> go.Figure:
    """Mean |h| at the massive entries per block: clean, after zeroing at one layer, and what each block
    computes when the value is zeroed at every layer (regeneration)."""
    layers = result.evaluation["regeneration_layers"]
    fig = go.Figure()
    show = {"original": "post", "zero (one layer)": "post", "zero (every layer)": "pre", "mean (every layer)": "pre"}
    for run in result.runs:
        if run["name"] in show:
            for cls, prof in run["regeneration"].items():
                kind = show[run["name"]]
                fig.add_trace(go.Scatter(x=layers, y=prof[kind], mode="lines+markers",
                                         name=f"{run['name']} [{cls}, {kind}-edit]"))
    fig.update_layout(title="regeneration: mean |h| at the massive entries per block", xaxis_title="block",
                      yaxis_title="|h|", yaxis_type="log", template="plotly_white")
    return fig
