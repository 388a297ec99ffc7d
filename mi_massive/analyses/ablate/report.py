"""How ``mi-massive report`` shows ablations: record -> (section HTML, summary facts).

>>> from mi_massive.analyses.ablate.record import Effect
>>> noisy = Effect("entry p0 d5", 29, 3000.0, 10.0, -2990.0, [-9000.0, 100.0], -0.997, [-9200.0, 13000.0], True)
>>> real = Effect("entry p0 d5", 11, 23000.0, 40.0, -22960.0, [-24000.0, -21900.0], -0.998, [-19000.0, 2700.0], False)
>>> headline_effect([noisy, real]).layer      # the block-29 change is within noise: never headlined
11

The summary quotes, per condition, the biggest change that is *beyond noise*: outside the null's
95% range (random same-size ablations) and with a 95% bootstrap CI that excludes 0
(:func:`beyond_noise`), plus every block where the same metric is beyond noise.
"""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from mi_massive.analyses.ablate.figures import ablation_figure
from mi_massive.analyses.ablate.record import AblationResult, Effect
from mi_massive.analyses.ablate.run import MIN_NULL, AblationSpec, run_ablations
from mi_massive.core import safe_html as sh
from mi_massive.core.corpus import Corpus
from mi_massive.core.html import figure_fragment, fmt, fmt_ci, fmt_pct, fmt_signed, table_html


def effects_figure(names: Sequence[str], means: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                   *, title: str, xaxis: str) -> go.Figure:
    """Dot-and-whisker plot of effects with 95% intervals (one row per name)."""
    fig = go.Figure(go.Scatter(x=list(means), y=[sh.plotly_label(n) for n in names], mode="markers",
                               marker=dict(size=10), name="change",
                               error_x=dict(type="data", symmetric=False,
                                            array=[h - m for m, h in zip(means, highs)],
                                            arrayminus=[m - l for m, l in zip(means, lows)])))
    fig.add_vline(x=0, line=dict(color="#999", dash="dot"))
    fig.update_layout(title=sh.plotly_label(title), xaxis_title=xaxis, yaxis_title="condition: metric @ block",
                      template="plotly_white", height=max(350, 30 * len(names) + 160), margin=dict(l=220))
    return fig


def beyond_noise(e: Effect) -> bool:
    """An effect worth headlining: its 95% CI excludes 0 and it lies outside the null's 95% range
    (when no null was run, the CI alone decides).

    >>> beyond_noise(Effect("top1", 3, 10.0, 1.0, -9.0, [-9.5, -8.5], -0.9, [-1.0, 1.0], False))
    True
    >>> beyond_noise(Effect("top1", 3, 10.0, 1.0, -9.0, [-12.0, 0.5], -0.9, [-1.0, 1.0], False))   # CI holds 0
    False
    """
    low, high = e.ci95
    return e.within_noise is not True and not (low <= 0.0 <= high)


def _size(e: Effect) -> float:
    """How big an effect is, comparable across metrics: |relative change|, else |change|."""
    rel = e.relative
    return abs(rel) if rel is not None and math.isfinite(rel) else abs(e.mean)


def headline_effect(effects: Sequence[Effect]) -> Effect | None:
    """The biggest effect (by |relative change|) that is :func:`beyond_noise`; the tracked massive
    entries (``entry ...``) come before ``top1``; None when nothing is beyond noise."""
    candidates = [e for e in effects if beyond_noise(e)]
    entries = [e for e in candidates if e.metric.startswith("entry")]
    pool = entries or candidates
    return max(pool, key=lambda e: (_size(e), abs(e.mean), -e.layer)) if pool else None


def block_ranges(layers: Sequence[int]) -> str:
    """Sorted blocks as ranges.

    >>> block_ranges([11, 12, 13, 27, 29, 28, 5])
    '5, 11-13, 27-29'
    """
    out: list[list[int]] = []
    for layer in sorted(set(layers)):
        if out and layer == out[-1][1] + 1:
            out[-1][1] = layer
        else:
            out.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def _n_sequences(rec: AblationResult) -> int | None:
    values = next(iter(rec.baseline.values()), None) if rec.baseline else None
    return len(values) if values is not None else None


def condition_fact(name: str, effects: Sequence[Effect], n: int | None = None) -> str:
    """One condition for the summary: its headline effect and where the same metric is beyond noise.

    >>> e = [Effect("entry p0 d5", l, 100.0, 1.0, -99.0, [-99.5, -98.5], -0.99, [-5.0, 5.0], False) for l in (2, 3)]
    >>> condition_fact("MLP 1 off", e, n=4)
    'MLP 1 off: entry p0 d5 changes by -99.0 (-99.0%, 95% CI -99.5 – -98.5) at block 2, beyond noise at blocks 2-3'
    >>> condition_fact("MLP 1 off", e, n=1)
    'MLP 1 off: entry p0 d5 changes by -99.0 (-99.0%, 1 sequence, no CI) at block 2, beyond noise at blocks 2-3'
    """
    lead = headline_effect(effects)
    if lead is None:
        has_null = any(e.within_noise is not None for e in effects)
        return f"{name}: no change beyond noise in any block" + ("" if has_null else " (no null run; CIs hold 0)")
    layers = [e.layer for e in effects if e.metric == lead.metric and beyond_noise(e)]
    noise = "beyond noise" if lead.within_noise is False else "CI excludes 0 (no null run)"
    where = f"block{'s' if len(layers) > 1 else ''} {block_ranges(layers)}"
    ci = f"95% CI {fmt_ci(*lead.ci95)}" if n is None or n >= 2 else f"{n} sequence, no CI"
    return (f"{name}: {lead.metric} changes by {fmt_signed(lead.mean)} ({fmt_pct(lead.relative)}, {ci}) "
            f"at block {lead.layer}, {noise} at {where}")


def ablation_view(rec) -> tuple[str, dict[str, str]]:
    """Ablations (``AblationResult``): per condition the per-block change of the tracked entry (figure),
    a short table of what is beyond noise, and every effect one click away."""
    n = _n_sequences(rec)
    facts, summary_rows, rows = [], [], []
    for cond in rec.conditions:
        facts.append(condition_fact(cond.name, cond.effects, n))
        for metric in dict.fromkeys(e.metric for e in cond.effects):
            eff = [e for e in cond.effects if e.metric == metric]
            lead = headline_effect(eff)
            beyond = [e.layer for e in eff if beyond_noise(e)]
            summary_rows.append([cond.name, metric, block_ranges(beyond) if beyond else "none",
                                 lead.layer if lead else "\u2014", fmt_signed(lead.mean) if lead else "\u2014",
                                 fmt_pct(lead.relative) if lead else "\u2014",
                                 fmt_ci(*lead.ci95, n=n) if lead else "\u2014",
                                 fmt_ci(*lead.null_ci95) if lead and lead.null_ci95 else "\u2014"])
        for e in cond.effects:
            rows.append([cond.name, e.metric, e.layer, fmt(e.baseline), fmt(e.ablated), fmt_signed(e.mean),
                         fmt_ci(*e.ci95, n=n), fmt_pct(e.relative), fmt_ci(*e.null_ci95) if e.null_ci95 else "\u2014",
                         e.label or ("beyond noise" if beyond_noise(e) else "within noise")])
    parts = [f'<p>{sh.text(n if n is not None else "?")} sequence(s). An effect is <b>beyond noise</b> when its 95% '
             "bootstrap CI excludes 0 and it lies outside the 95% range of the same change under random same-size "
             "ablations (the null). Changes are ablated - baseline, in residual units.</p>"]
    metrics = [m for m in dict.fromkeys(e.metric for c in rec.conditions for e in c.effects) if m.startswith("entry")]
    for metric in metrics[:2] or ["top1"]:
        try:
            parts.append(figure_fragment(ablation_figure(rec, metric)))
        except Exception:  # a record without this metric in every condition: the tables still show
            pass
    parts.append("<h3>Where each condition changes things beyond noise</h3>")
    parts.append(table_html(["condition", "metric", "blocks beyond noise", "biggest at block", "change", "relative",
                             "95% CI", "null 95%"], summary_rows, source="ablation.json"))
    parts.append(f"<p>Identical rerun max |diff|: {sh.text(fmt(rec.rerun_max_abs_diff))} (the numerical noise floor).</p>")
    parts.append("<details><summary>every effect (condition, metric, block)</summary>"
                 + table_html(["condition", "metric", "block", "baseline", "ablated", "change", "95% CI", "relative",
                               "null 95%", "vs null"], rows, max_rows=len(rows) or 1, source="ablation.json")
                 + "</details>")
    return "\n".join(parts), ({"removal": "Ablations: " + "; ".join(facts[:4]) + "."} if facts else {})


def compute(model, corpus: Corpus, scan_result) -> AblationResult:
    """Hook for ``mi-massive report``: remove the MLP of the first massive block, against a null of
    20 random single MLP layers, tracking the strongest massive entry's (position, dim)."""
    from mi_massive.analyses.attribute.run import strongest_entry

    layer, position, dim = strongest_entry(scan_result)
    spec = AblationSpec(name=f"MLP {layer} off", kind="mlp", targets=[layer])
    return run_ablations(model, corpus, [spec], tracked=[(position, dim)], n_null=MIN_NULL, progress=False,
                         options={"from": "mi-massive report"})
