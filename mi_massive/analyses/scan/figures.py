"""Figures of a scan: layer-wise top-k and median (Sun et al. Fig. 2) and the 3-D |h| view (Fig. 1).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> result = mm.scan(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), progress=False)
>>> list(figures(result))
['layerwise']
"""

from __future__ import annotations

import re
from typing import Sequence

import plotly.graph_objects as go
import torch
from jaxtyping import Float

from mi_massive.analyses.scan.record import ScanResult
from mi_massive.core.html import fmt, integer_axis, log_axis


def layerwise_figure(result: ScanResult, *, title: str | None = None, kind: str | None = None) -> go.Figure:
    """Top-1/2/3 and median |h| against layer (0-based; the embeddings are layer -1), log y-axis.

    Each point is the mean over sequences; error bars are the 95% t-interval over sequences.
    ``kind``: the hooks of one kind (:meth:`ScanResult.hook_kinds`, e.g. ``"mlp_out"``); default: the
    residual stream (``resid_post``) when the scan has it, else every hook.
    """
    groups = result.hook_kinds()
    if kind is None:
        kind = "resid_post" if "resid_post" in groups else None
    elif kind not in groups:
        raise KeyError(f"no hooks of kind {kind!r} in this scan; kinds: {', '.join(groups)}")
    layers = groups[kind] if kind is not None else result.layers
    x = [r.layer for r in layers]
    fig = go.Figure()
    k = min(3, len(layers[0].top_values))
    shown = [r.median for r in layers]
    for i in range(k):
        shown += [r.top_values_ci95[i][1] for r in layers] + [r.top_values_ci95[i][0] for r in layers]
        y = [r.top_values[i] for r in layers]
        err_hi = [r.top_values_ci95[i][1] - r.top_values[i] for r in layers]
        err_lo = [r.top_values[i] - r.top_values_ci95[i][0] for r in layers]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"top-{i + 1}",
                                 error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True)))
    fig.add_trace(go.Scatter(x=x, y=[r.median for r in layers], mode="lines+markers", name="median",
                             line=dict(dash="dash")))
    model = result.provenance.get("model", {}).get("name", "model")
    n = len(result.tokens)
    what = "" if kind in (None, "resid_post") else f" at {kind}"
    fig.update_layout(
        title=title or f"{model}: largest |activation|{what} per layer (mean of {n} sequence{'s' * (n != 1)})",
        xaxis=integer_axis(len(x), title="layer (0-based; -1 = embeddings)"),
        yaxis=log_axis(shown, title="|h| (log scale)"),
        template="plotly_white", legend=dict(title="per layer"),
    )
    return fig


def figures(result: ScanResult) -> dict[str, go.Figure]:
    """The figures of a scan record, by file stem: ``layerwise`` (:func:`layerwise_figure`) for the
    residual stream, and ``layerwise_<kind>`` (dots as ``_``: ``layerwise_attn_hook_q``) for every other
    hook kind scanned (``scan(..., hooks=...)``).

    The 3-D view (:func:`feature_3d_figure`) needs the model (it reruns one sentence), so the
    command adds it.
    """
    out = {}
    for kind in result.hook_kinds():
        stem = "layerwise" if kind == "resid_post" else "layerwise_" + re.sub(r"[^A-Za-z0-9]+", "_", kind)
        out[stem] = layerwise_figure(result, kind=kind)
    return out


def feature_3d_figure(h: Float[torch.Tensor, "pos d_model"], str_tokens: Sequence[str], *, layer: int,
                      model_name: str = "model", top_dims: int = 3) -> go.Figure:
    """|h[t, d]| over token position t and dim d for one sentence at one layer, as a 3-D surface.

    The ``top_dims`` largest dims are annotated; axes are labelled with the token strings (at most
    ~24 labels, each cut to 10 characters). WebGL draws 3-D tick labels as literal text (no markup,
    no entities), so pass the tokens as they should read (e.g. :func:`~mi_massive.core.safe_html.display_token`),
    not escaped.
    """
    a = h.abs().float()
    z = a.T.numpy()  # [d_model, pos]
    fig = go.Figure(go.Surface(z=z, x=list(range(a.shape[0])), y=list(range(a.shape[1])), colorscale="Viridis",
                               showscale=True, colorbar=dict(title="|h|", len=0.75)))
    peak_dims = a.amax(0).topk(min(top_dims, a.shape[1])).indices.tolist()
    labels = ", ".join(f"dim {d}: {fmt(a[:, d].max().item())}" for d in peak_dims)
    step = max(1, -(-a.shape[0] // 24))  # at most ~24 token labels
    ticks = list(range(0, a.shape[0], step))
    fig.update_layout(
        title=f"{model_name}, block {layer}: |h| per token and dim<br><sub>largest: {labels}</sub>",
        scene=dict(xaxis=dict(title="token", tickvals=ticks, ticktext=[_short(str_tokens[i]) for i in ticks]),
                   yaxis=dict(title="dim"), zaxis=dict(title="|h|"),
                   # a longer token axis, the camera low and aimed a little below the centre: every tick
                   # label stays inside the figure (checked on screenshots, tests/report/test_browser_pages.py)
                   aspectmode="manual", aspectratio=dict(x=1.5, y=1.0, z=0.7),
                   camera=dict(eye=dict(x=1.45, y=1.45, z=0.8), center=dict(x=0, y=0, z=-0.2))),
        template="plotly_white", height=700, margin=dict(l=10, r=10, b=10, t=90),
    )
    return fig


def _short(token: str, limit: int = 10) -> str:
    """A tick label of at most ``limit`` characters (longer tokens end in an ellipsis)."""
    return token if len(token) <= limit else token[:limit - 1] + "\u2026"
