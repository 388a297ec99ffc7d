"""How ``mi-massive report`` shows head sink scores: record -> (section HTML, summary facts)."""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from mi_massive.analyses.heads.run import heads
from mi_massive.analyses.heads.record import HeadScores
from mi_massive.core import safe_html as sh
from mi_massive.core.corpus import Corpus
from mi_massive.core.html import figure_fragment, table_html


def head_scores_figure(matrix: Sequence[Sequence[float]], *, title: str) -> go.Figure:
    """Heatmap (block x head) of a sink score matrix (probabilities 0..1; NaN = missing)."""
    z = [[None if (v is None or (isinstance(v, float) and math.isnan(v))) else round(v, 4) for v in row]
         for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Reds", colorbar=dict(title="attention"),
                               hovertemplate="block %{y}, head %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=sh.plotly_label(title), xaxis=dict(title="head", dtick=1), yaxis=dict(title="block"),
                      template="plotly_white", height=550)
    return fig


def heads_view(rec) -> tuple[str, dict[str, str]]:
    """Head sink scores (``HeadScores``): heatmaps to position 0 / to massive positions and the top heads."""
    parts = [figure_fragment(head_scores_figure(rec.matrix("first"), title="mean attention to position 0 (queries q >= "
                                                f"{rec.min_query})"))]
    if any(h.to_massive is not None for h in rec.heads):
        parts.append(figure_fragment(head_scores_figure(rec.matrix("massive"), title="mean attention to massive positions")))
    top = rec.ranking("first")[:10]
    parts.append(table_html(["block", "head", "to position 0", "95% CI", "to massive", "95% CI"],
                            [[h.layer, h.head, h.to_first, h.to_first_ci95, h.to_massive, h.to_massive_ci95] for h in top]))
    sinks = ", ".join(f"L{h.layer}H{h.head} {h.to_first:.2f}" for h in top[:5])
    return "\n".join(parts), {"sinks": f"Top sink heads over the corpus (attention to position 0): {sinks}."}


def compute(model, corpus: Corpus, scan_result) -> HeadScores:
    """Hook for ``mi-massive report``: sink scores to position 0 and to the scan's massive positions."""
    return heads(model, corpus, scan_result=scan_result, progress=False, options={"from": "mi-massive report"})
