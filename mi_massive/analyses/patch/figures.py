"""Figures of activation patching (plotly; saved with :func:`mi_massive.core.html.save_figure`).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> list(figures(mm.patch(model, "abc", "abd", metric="loss", components=["resid_pre", "head"], progress=False)))
['patch_resid_pre', 'patch_head']
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.core.html import fmt

NORMALISATION = "(patched - corrupted) / (clean - corrupted)"


def patching_figure(res: PatchingResult, component: str) -> go.Figure:
    """Layer x position (or head) grid of the normalised effect: 1 = the clean metric restored, 0 = the
    corrupted value. When clean == corrupted the normalisation is undefined and patched - corrupted (the
    metric's units) is shown instead; the colour bar says which."""
    normalised = all(math.isfinite(v) for row in res.normalised[component] for v in row)
    if normalised:
        z, bar = res.normalised[component], f"normalised effect<br>{NORMALISATION}<br>1 = clean restored"
    else:
        z = [[v - res.corrupted for v in row] for row in res.results[component]]
        bar = f"patched - corrupted<br>({res.metric}; clean = corrupted,<br>so not normalised)"
    if component == "head":
        x, x_title = [f"H{h}" for h in range(len(z[0]))], "head (attn.hook_z, all positions)"
    else:
        x = [f"{i}:{t!r}" if c == t else f"{i}:{c!r}→{t!r}"
             for i, (c, t) in enumerate(zip(res.clean_tokens, res.corrupted_tokens))]
        x_title = "position: token (clean→corrupted where they differ)"
    fig = go.Figure(go.Heatmap(z=z, x=x, y=[f"L{l}" for l in range(len(z))], colorscale="RdBu", zmid=0,
                               colorbar=dict(title=dict(text=bar)),
                               hovertemplate="%{y}, %{x}<br>%{z:,.6~r}<extra></extra>"))
    fig.update_layout(title=f"Patching {component}, clean → corrupted (metric {res.metric}; clean {fmt(res.clean)}, "
                            f"corrupted {fmt(res.corrupted)})", xaxis_title=x_title, yaxis_title="layer (block)",
                      yaxis=dict(autorange="reversed"), template="plotly_white",
                      height=max(450, 18 * len(z) + 180), margin=dict(b=120))  # room for the colour bar's scale
    return fig


def figures(res: PatchingResult) -> dict[str, go.Figure]:
    """By file stem: ``patch_{component}`` for every patched component (:func:`patching_figure`)."""
    return {f"patch_{c}": patching_figure(res, c) for c in res.results}
