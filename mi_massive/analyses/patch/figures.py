"""Figures of activation patching (plotly; saved with :func:`mi_massive.core.html.save_figure`).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> list(figures(mm.patch(model, "abc", "abd", metric="loss", components=["resid_pre", "head"], progress=False)))
['patch_resid_pre', 'patch_head']
"""

from __future__ import annotations

import plotly.graph_objects as go

from mi_massive.analyses.patch.record import PatchingResult


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


def figures(res: PatchingResult) -> dict[str, go.Figure]:
    """By file stem: ``patch_{component}`` for every patched component (:func:`patching_figure`)."""
    return {f"patch_{c}": patching_figure(res, c) for c in res.results}
