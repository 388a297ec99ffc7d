"""How ``mi-massive report`` shows ablations: record -> (section HTML, summary facts)."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from mi_massive.analyses.ablate.run import MIN_NULL, AblationSpec, run_ablations
from mi_massive.analyses.ablate.record import AblationResult
from mi_massive.core import safe_html as sh
from mi_massive.core.corpus import Corpus
from mi_massive.core.html import figure_fragment, fmt, table_html


def effects_figure(names: Sequence[str], means: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                   *, title: str, xaxis: str) -> go.Figure:
    """Dot-and-whisker plot of effects with 95% intervals (one row per name)."""
    fig = go.Figure(go.Scatter(x=list(means), y=[sh.plotly_label(n) for n in names], mode="markers",
                               error_x=dict(type="data", symmetric=False,
                                            array=[h - m for m, h in zip(means, highs)],
                                            arrayminus=[m - l for m, l in zip(means, lows)])))
    fig.update_layout(title=sh.plotly_label(title), xaxis_title=xaxis, template="plotly_white",
                      height=max(350, 30 * len(names) + 120))
    return fig


def ablation_view(rec) -> tuple[str, dict[str, str]]:
    """Ablations (``AblationResult``): every effect with its CI and null range; the last block per condition."""
    rows, facts = [], []
    names, means, lows, highs = [], [], [], []
    for cond in rec.conditions:
        for e in cond.effects:
            rows.append([cond.name, e.metric, e.layer, e.baseline, e.ablated, e.mean, e.ci95, e.relative, e.null_ci95,
                         e.within_noise])
        entry = [e for e in cond.effects if e.metric.startswith("entry")] or cond.effects
        if entry:
            last = max(entry, key=lambda e: e.layer)
            noise = {True: "within noise", False: "beyond noise", None: "no null"}[last.within_noise]
            facts.append(f"{cond.name}: {last.metric} at block {last.layer} changes by {fmt(last.mean)} "
                         f"({last.relative:+.0%}, {noise})")
            names.append(f"{cond.name}: {last.metric} @ {last.layer}")
            means.append(last.mean)
            lows.append(last.ci95[0])
            highs.append(last.ci95[1])
    parts = []
    if names:
        parts.append(figure_fragment(effects_figure(names, means, lows, highs, title="ablation effects at the last block",
                                                    xaxis="ablated - baseline (95% bootstrap CI)")))
    parts.append(f"<p>Identical rerun max |diff|: {sh.text(fmt(rec.rerun_max_abs_diff))}.</p>")
    parts.append(table_html(["condition", "metric", "block", "baseline", "ablated", "change", "95% CI", "relative",
                             "null 95%", "within noise"], rows, max_rows=80))
    return "\n".join(parts), ({"removal": "Ablations: " + "; ".join(facts[:4]) + "."} if facts else {})


def compute(model, corpus: Corpus, scan_result) -> AblationResult:
    """Hook for ``mi-massive report``: remove the MLP of the first massive block, against a null of
    20 random single MLP layers, tracking the strongest massive entry's (position, dim)."""
    from mi_massive.analyses.attribute.run import strongest_entry

    layer, position, dim = strongest_entry(scan_result)
    spec = AblationSpec(name=f"MLP {layer} off", kind="mlp", targets=[layer])
    return run_ablations(model, corpus, [spec], tracked=[(position, dim)], n_null=MIN_NULL, progress=False,
                         options={"from": "mi-massive report"})
