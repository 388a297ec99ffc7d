"""How ``mi-massive report`` shows head sink scores: record -> (section HTML, summary facts)."""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from mi_massive.analyses.heads.run import heads
from mi_massive.analyses.heads.record import HeadScores
from mi_massive.core import safe_html as sh
from mi_massive.core.corpus import Corpus
from mi_massive.core.html import figure_fragment, fmt, fmt_ci, integer_axis, table_html


def head_scores_figure(matrix: Sequence[Sequence[float]], *, title: str) -> go.Figure:
    """Heatmap (block x head) of a sink score matrix (probabilities 0..1; NaN = missing)."""
    z = [[None if (v is None or (isinstance(v, float) and math.isnan(v))) else round(v, 4) for v in row]
         for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Reds", colorbar=dict(title="attention"),
                               hovertemplate="block %{y}, head %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=sh.plotly_label(title), xaxis=dict(title="head", dtick=1),
                      yaxis=integer_axis(len(z), title="block (0-based)"), template="plotly_white", height=550)
    return fig


def heads_view(rec) -> tuple[str, dict[str, str]]:
    """Head sink scores (``HeadScores``): heatmaps to position 0 / to massive positions, the highest and
    lowest heads (3 significant digits, 95% CIs as ``a–b``), and every head one click away."""
    n = len(rec.massive_positions) or None
    parts = [figure_fragment(head_scores_figure(rec.matrix("first"), title="mean attention to position 0 (queries q >= "
                                                f"{rec.min_query})"))]
    if any(h.to_massive is not None for h in rec.heads):
        parts.append(figure_fragment(head_scores_figure(rec.matrix("massive"), title="mean attention to massive positions")))
    ranked = rec.ranking("first")
    header = ["head", "to position 0", "95% CI", "to massive positions", "95% CI"]

    def row(h):
        return [f"L{h.layer}H{h.head}", fmt(h.to_first), fmt_ci(*h.to_first_ci95, n=n),
                fmt(h.to_massive), fmt_ci(*h.to_massive_ci95, n=n) if h.to_massive_ci95 else "\u2014"]

    k = min(5, len(ranked))
    parts.append(f"<h3>Highest {k} heads (attention to position 0; {sh.text(n or '?')} sequence(s))</h3>")
    parts.append(table_html(header, [row(h) for h in ranked[:k]]))
    lowest = ranked[max(k, len(ranked) - k):]
    if lowest:
        parts.append(f"<h3>Lowest {len(lowest)} heads</h3>")
        parts.append(table_html(header, [row(h) for h in lowest]))
    parts.append(f"<details><summary>all {len(ranked)} heads, highest first</summary>"
                 + table_html(header, [row(h) for h in ranked], max_rows=len(ranked) or 1, source="heads.json")
                 + "</details>")
    sinks = ", ".join(f"L{h.layer}H{h.head} {fmt(h.to_first)}" for h in ranked[:5])
    return "\n".join(parts), {"sinks": f"Top sink heads over the corpus (attention to position 0): {sinks}."}


def compute(model, corpus: Corpus, scan_result) -> HeadScores:
    """Hook for ``mi-massive report``: sink scores to position 0 and to the scan's massive positions."""
    return heads(model, corpus, scan_result=scan_result, progress=False, options={"from": "mi-massive report"})
