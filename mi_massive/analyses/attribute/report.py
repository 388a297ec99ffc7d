"""How ``mi-massive report`` shows the exact attribution: record -> (section HTML, summary facts)."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from mi_massive.analyses.attribute.run import attribute, strongest_entry
from mi_massive.analyses.attribute.record import AttributionResult
from mi_massive.core import safe_html as sh
from mi_massive.core.corpus import Corpus
from mi_massive.core.html import figure_fragment, fmt, fmt_signed, table_html


def contributions_figure(labels: Sequence[str], values: Sequence[float], *, title: str) -> go.Figure:
    """Horizontal bars of signed contributions (residual units), largest |value| on top."""
    fig = go.Figure(go.Bar(x=list(values)[::-1], y=[sh.plotly_label(l) for l in labels][::-1], orientation="h",
                           marker_color=["#d62728" if v > 0 else "#1f77b4" for v in list(values)[::-1]]))
    fig.add_vline(x=0, line=dict(color="#999", width=1))
    fig.update_layout(title=sh.plotly_label(title), xaxis_title="contribution (residual units; red adds, blue removes)",
                      yaxis_title="component", template="plotly_white", height=max(350, 28 * len(labels) + 140))
    return fig


def attribution_view(rec) -> tuple[str, dict[str, str]]:
    """Exact attribution (``AttributionResult``): top writers as bars and a table, with the closure error."""
    top = rec.top_terms(15)
    parts = [f"<p>h<sub>{rec.layer}</sub>[position {rec.position}, dim {rec.dim}] = {sh.text(fmt(rec.residual))} "
             f"(token <code>{sh.text(sh.display_token(rec.token))}</code>); the terms sum to {sh.text(fmt(rec.total))}, "
             f"relative error {sh.text(fmt(rec.rel_error))}.</p>",
             figure_fragment(contributions_figure([c.label for c in top], [c.value for c in top],
                                                  title=f"who writes block {rec.layer}, position {rec.position}, dim {rec.dim}")),
             table_html(["kind", "component", "contribution", "share of the entry"],
                        [[c.kind, c.label, fmt_signed(c.value), _share(c.value, rec.residual)] for c in top],
                        source="attribution.json")]
    neurons = rec.top(10, kinds=("neuron",))
    if neurons:
        parts.append(f"<h3>Neurons of MLP {sh.text(rec.dominant_mlp)}</h3>")
        parts.append(table_html(["neuron", "contribution", "share of the entry"],
                                [[c.label, fmt_signed(c.value), _share(c.value, rec.residual)] for c in neurons],
                                source="attribution.json"))
    lead = top[0] if top else None
    share = f" ({_share(lead.value, rec.residual)} of it)" if lead and rec.residual else ""
    fact = (f"h{rec.layer}[pos {rec.position}, dim {rec.dim}] = {fmt(rec.residual)} is written mainly by "
            f"{lead.label}{share}." if lead else "")
    return "\n".join(parts), ({"writers": fact} if fact else {})


def _share(value: float, total: float) -> str:
    """``value`` as a percentage of ``total`` (3 significant digits).

    >>> _share(22980.0, 23000.0), _share(1.0, 0.0)
    ('99.9%', '—')
    """
    return fmt(100.0 * value / total) + "%" if total else "\u2014"


def compute(model, corpus: Corpus, scan_result) -> AttributionResult:
    """Hook for ``mi-massive report``: exact attribution of the strongest entry at the first massive block."""
    layer, position, dim = strongest_entry(scan_result)
    return attribute(model, corpus, layer, position, dim, options={"from": "mi-massive report"})
