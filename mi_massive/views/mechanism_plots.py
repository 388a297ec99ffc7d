"""Figures of the mechanism analyses: MLP activation flow, top neurons, SVD spectrum, token alignment,
intervention perplexities and regeneration. Each function takes a result record and returns a plotly figure."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


# ---------------------------------------------------------------- MLP

def mlp_flow_figure(result) -> go.Figure:
    """Max |x| at the massive token vs the max over ordinary tokens, and the median |x|, per MLP checkpoint (log y)."""
    cps = result.checkpoints
    x = [c["label"] for c in cps]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[c["massive_token_max"] for c in cps], mode="lines+markers",
                             name="massive token: max |x|"))
    fig.add_trace(go.Scatter(x=x, y=[c["ordinary_max"] for c in cps], mode="lines+markers",
                             name="ordinary tokens: max |x|"))
    fig.add_trace(go.Scatter(x=x, y=[c["median"] for c in cps], mode="lines+markers", name="median |x| (all tokens)",
                             line=dict(dash="dash")))
    fig.update_layout(title=f"{_model_name(result)}, block {result.layer} MLP: activation flow (dim {result.dim})",
                      yaxis_type="log", yaxis_title="|x|", template="plotly_white")
    return fig


def top_neurons_figure(result, k: int = 20) -> go.Figure:
    """Contribution hook_post[t, n] * W_out[n, dim] of the top neurons at the massive token vs ordinary tokens' mean."""
    top = result.contributions["top_neurons"][:k]
    names = [str(t["neuron"]) for t in top]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[t["massive"] for t in top], name="massive token"))
    fig.add_trace(go.Bar(x=names, y=[t["ordinary_mean"] for t in top], name="ordinary tokens (mean)"))
    c = result.contributions
    fig.update_layout(title=f"block {result.layer}: per-neuron contributions to dim {result.dim} "
                            f"({c['n_neurons_50']} neurons carry 50%, {c['n_neurons_90']} carry 90%)",
                      xaxis_title="neuron", yaxis_title="contribution (residual units)", barmode="group",
                      template="plotly_white")
    return fig


# ---------------------------------------------------------------- SVD

def spectrum_figure(result) -> go.Figure:
    """Singular values of W_out (log y) with sigma_1/sigma_2 and the sigma_1^2 share in the title."""
    s = result.spectrum
    fig = go.Figure(go.Scatter(y=s["singular_values"], mode="lines+markers", name="sigma_k"))
    fig.update_layout(title=f"block {result.layer} W_out: sigma1/sigma2 = {s['sigma_ratio']:.2f}, "
                            f"sigma1^2 share = {100 * s['sigma1_sq_share']:.2f}%, V^T[0, {result.dim}] = {s['vt0_dim']:.3f}",
                      xaxis_title="k", yaxis_title="sigma_k", yaxis_type="log", template="plotly_white")
    return fig


def svd_regression_figure(result) -> go.Figure:
    """Scatter of y = mlp_out[:, dim] - b_out[dim] against h . u_1, one panel per position class."""
    reg = result.regression
    classes = [c for c in ("start", "other") if c in reg["points"]]
    fig = make_subplots(rows=1, cols=max(1, len(classes)), subplot_titles=[
        f"{c}: R^2 = {reg['fits'][c]['r2'] if reg['fits'][c]['r2'] is not None else float('nan'):.3f}" for c in classes])
    for i, c in enumerate(classes):
        pts = reg["points"][c]
        fig.add_trace(go.Scattergl(x=pts["proj"], y=pts["y"], mode="markers", marker=dict(size=3), name=c),
                      row=1, col=i + 1)
    fig.update_layout(title=f"block {result.layer}: y[{result.dim}] against h . u_1", template="plotly_white")
    return fig


# ---------------------------------------------------------------- tokens

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


# ---------------------------------------------------------------- interventions

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
