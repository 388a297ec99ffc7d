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

from mi_massive.core.html import log_axis


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
    values = [v for c in cps for v in (c.massive_token_max, c.ordinary_max, c.median)]
    fig.update_layout(title=f"{_model_name(result)}, block {result.layer} MLP: activation flow (dim {result.dim})",
                      yaxis=log_axis(values, title="|x| (log scale)"), xaxis=dict(title="checkpoint inside the MLP",
                                                                                  tickangle=-20, automargin=True),
                      template="plotly_white", height=550)
    return fig


def top_neurons_figure(result, k: int = 20) -> go.Figure:
    """Contribution hook_post[t, n] * W_out[n, dim] of the top neurons at the massive token vs ordinary tokens' mean."""
    c = result.contributions
    top = c.top_neurons[:k]
    names = [str(t.neuron) for t in top]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[t.massive for t in top], name="massive token"))
    # ordinary tokens contribute ~0 next to the massive token: markers stay visible where a bar would not
    fig.add_trace(go.Scatter(x=names, y=[t.ordinary_mean for t in top], mode="markers", name="ordinary tokens (mean)",
                             marker=dict(symbol="diamond", size=9, color="#dd8452", line=dict(width=1, color="#333"))))
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.update_layout(title=f"block {result.layer}: per-neuron contributions to dim {result.dim} "
                            f"({c.n_neurons_50} neuron{' carries' if c.n_neurons_50 == 1 else 's carry'} 50%, "
                            f"{c.n_neurons_90} carry 90%)",
                      xaxis=dict(title="neuron (largest contribution first)", type="category"),
                      yaxis_title="contribution hook_post · W_out (residual units)", template="plotly_white")
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of an :class:`~mi_massive.analyses.mlp.record.MlpResult` (what the command writes)."""
    return {"mlp_flow": mlp_flow_figure(result), "mlp_top_neurons": top_neurons_figure(result)}
