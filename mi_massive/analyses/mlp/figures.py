"""Figures of ``mi-massive mlp``: the activation flow through the MLP and the top neurons' contributions.

>>> import mi_massive as mm
>>> from mi_massive.analyses.mlp import mlp
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = mlp(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True))
>>> sorted(figures(r))
['mlp_flow', 'mlp_top_neurons']
"""

from __future__ import annotations

import plotly.graph_objects as go


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def mlp_flow_figure(result) -> go.Figure:
    """Max |x| at the massive token vs the max over ordinary tokens, and the median |x|, per MLP checkpoint (log y)."""
    cps = result.checkpoints
    x = [c.label for c in cps]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[c.massive_token_max for c in cps], mode="lines+markers",
                             name="massive token: max |x|"))
    fig.add_trace(go.Scatter(x=x, y=[c.ordinary_max for c in cps], mode="lines+markers",
                             name="ordinary tokens: max |x|"))
    fig.add_trace(go.Scatter(x=x, y=[c.median for c in cps], mode="lines+markers", name="median |x| (all tokens)",
                             line=dict(dash="dash")))
    fig.update_layout(title=f"{_model_name(result)}, block {result.layer} MLP: activation flow (dim {result.dim})",
                      yaxis_type="log", yaxis_title="|x|", template="plotly_white")
    return fig


def top_neurons_figure(result, k: int = 20) -> go.Figure:
    """Contribution hook_post[t, n] * W_out[n, dim] of the top neurons at the massive token vs ordinary tokens' mean."""
    c = result.contributions
    top = c.top_neurons[:k]
    names = [str(t.neuron) for t in top]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[t.massive for t in top], name="massive token"))
    fig.add_trace(go.Bar(x=names, y=[t.ordinary_mean for t in top], name="ordinary tokens (mean)"))
    fig.update_layout(title=f"block {result.layer}: per-neuron contributions to dim {result.dim} "
                            f"({c.n_neurons_50} neurons carry 50%, {c.n_neurons_90} carry 90%)",
                      xaxis_title="neuron", yaxis_title="contribution (residual units)", barmode="group",
                      template="plotly_white")
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of an :class:`~mi_massive.analyses.mlp.record.MlpResult` (what the command writes)."""
    return {"mlp_flow": mlp_flow_figure(result), "mlp_top_neurons": top_neurons_figure(result)}
