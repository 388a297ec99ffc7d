"""One self-contained HTML report: a summary on top, then one section per analysis.

Pure rendering: :class:`Section` objects (built by :mod:`mi_massive.pipelines.report`) and result
records go in, escaped HTML comes out. plotly.js and the circuitsvis bundle are inlined once in the
page head; every figure is a div + script without its own copy. A strict Content-Security-Policy
forbids any request (see :func:`mi_massive.views.safe_html.html_page`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import plotly.graph_objects as go

from mi_massive.views import safe_html as sh
from mi_massive.views.attention import circuitsvis_bundle_script, figure_fragment, plotlyjs_script

NOT_COMPUTED = "not computed"


@dataclass
class Section:
    """One part of the report.

    ``status``: ``computed`` (run now), ``loaded`` (read from a JSON file of an earlier command) or
    ``not computed``; ``body``: safe HTML; ``facts``: short plain-text answers for the summary,
    keyed by question (``dims``, ``where``, ``writers``, ``removal``, ``sinks``); ``files``: JSON
    files behind it; ``note``: why it is missing or where it came from.
    """

    id: str
    title: str
    status: str = NOT_COMPUTED
    body: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status, "facts": self.facts,
                "files": self.files, "note": self.note}


SUMMARY_QUESTIONS = (
    ("dims", "Massive dims"),
    ("where", "Where they appear"),
    ("writers", "Who writes them"),
    ("removal", "What removing them does"),
    ("sinks", "Attention sinks"),
)


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (ints as is, None as an em dash)."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], *, max_rows: int = 50) -> str:
    """An HTML table; every cell escaped. Longer tables are cut with a note."""
    head = "".join(f"<th>{sh.text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{sh.text(_cell(c))}</td>" for c in row) + "</tr>" for row in rows[:max_rows])
    more = f'<p class="muted">{len(rows) - max_rows} more rows in the JSON file.</p>' if len(rows) > max_rows else ""
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>{more}'


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return text if len(text) <= 120 else text[:117] + "..."
    return fmt(value)


def records_table(records: Sequence[dict[str, Any]], *, max_rows: int = 50) -> str:
    """A table of dicts (columns = union of keys in first-seen order)."""
    if not records:
        return '<p class="muted">(empty)</p>'
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    return table_html(cols, [[r.get(c) for c in cols] for r in records], max_rows=max_rows)


def notes_html(notes: Sequence[str]) -> str:
    """A bullet list of plain-text notes (escaped)."""
    if not notes:
        return ""
    return "<ul>" + "".join(f"<li>{sh.text(n)}</li>" for n in notes) + "</ul>"


def summary_html(sections: Sequence[Section]) -> str:
    """The top summary: one line per question, from the first section that answers it, else "not computed"."""
    items = []
    for key, label in SUMMARY_QUESTIONS:
        answers = [(s, s.facts[key]) for s in sections if key in s.facts]
        if answers:
            text = " ".join(f"{a}" for _, a in answers)
            src = ", ".join(f'<a href="#{sh.text(s.id)}">{sh.text(s.title)}</a>' for s, _ in answers)
            items.append(f"<li><b>{sh.text(label)}:</b> {sh.text(text)} <span class=\"muted\">({src})</span></li>")
        else:
            items.append(f"<li><b>{sh.text(label)}:</b> <i>{NOT_COMPUTED}</i></li>")
    return '<ul class="summary">' + "".join(items) + "</ul>"


def status_table(sections: Sequence[Section]) -> str:
    """Which analyses ran, were loaded, or are missing (and why)."""
    rows = [[s.title, s.status, ", ".join(s.files), s.note] for s in sections]
    return table_html(["analysis", "status", "files", "note"], rows)


def section_html(section: Section) -> str:
    """One ``<section>`` (the body of a missing analysis is a one-line note)."""
    body = section.body or f'<p class="muted">{NOT_COMPUTED}{": " + sh.text(section.note) if section.note else ""}</p>'
    return f'<section id="{sh.text(section.id)}">\n<h2>{sh.text(section.title)}</h2>\n{body}\n</section>'


def report_page(title: str, header: dict[str, Any], sections: Sequence[Section]) -> str:
    """The whole ``report.html``: title, provenance line, summary, contents, then every section."""
    prov = " \u00b7 ".join(f"{k}: {v}" for k, v in header.items())
    nav = "<nav><ul>" + "".join(f'<li><a href="#{sh.text(s.id)}">{sh.text(s.title)}</a> '
                                f'<span class="muted">({sh.text(s.status)})</span></li>' for s in sections) + "</ul></nav>"
    body = "\n".join([
        f"<h1>{sh.text(title)}</h1>", f'<p class="muted">{sh.text(prov)}</p>',
        '<section id="summary"><h2>Summary</h2>', summary_html(sections), nav, status_table(sections), "</section>",
        *[section_html(s) for s in sections],
    ])
    return sh.html_page(title, body, head_scripts=[plotlyjs_script(), circuitsvis_bundle_script()])


# ---------------------------------------------------------------- views of the other analyses' records
def head_scores_figure(matrix: Sequence[Sequence[float]], *, title: str) -> go.Figure:
    """Heatmap (block x head) of a sink score matrix (probabilities 0..1; NaN = missing)."""
    z = [[None if (v is None or (isinstance(v, float) and math.isnan(v))) else round(v, 4) for v in row]
         for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Reds", colorbar=dict(title="attention"),
                               hovertemplate="block %{y}, head %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=sh.plotly_label(title), xaxis=dict(title="head", dtick=1), yaxis=dict(title="block"),
                      template="plotly_white", height=550)
    return fig


def contributions_figure(labels: Sequence[str], values: Sequence[float], *, title: str) -> go.Figure:
    """Horizontal bars of signed contributions (residual units), largest |value| on top."""
    fig = go.Figure(go.Bar(x=list(values)[::-1], y=[sh.plotly_label(l) for l in labels][::-1], orientation="h",
                           marker_color=["#d62728" if v > 0 else "#1f77b4" for v in list(values)[::-1]]))
    fig.update_layout(title=sh.plotly_label(title), xaxis_title="contribution (residual units)",
                      template="plotly_white", height=max(350, 28 * len(labels) + 120))
    return fig


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



# ---------------------------------------------------------------- record -> (body HTML, summary facts)
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


def attribution_view(rec) -> tuple[str, dict[str, str]]:
    """Exact attribution (``AttributionResult``): top writers as bars and a table, with the closure error."""
    top = rec.top(15, kinds=("embed", "pos_embed", "head", "attn_bias", "mlp"))
    parts = [f"<p>h<sub>{rec.layer}</sub>[position {rec.position}, dim {rec.dim}] = {sh.text(fmt(rec.residual))} "
             f"(token <code>{sh.text(sh.display_token(rec.token))}</code>); the terms sum to {sh.text(fmt(rec.total))}, "
             f"relative error {sh.text(fmt(rec.rel_error, 2))}.</p>",
             figure_fragment(contributions_figure([c.label for c in top], [c.value for c in top],
                                                  title=f"who writes block {rec.layer}, position {rec.position}, dim {rec.dim}")),
             table_html(["kind", "label", "value", "share of residual"],
                        [[c.kind, c.label, c.value, c.value / rec.residual if rec.residual else None] for c in top])]
    neurons = rec.top(10, kinds=("neuron",))
    if neurons:
        parts.append(f"<h3>Neurons of MLP {sh.text(rec.dominant_mlp)}</h3>")
        parts.append(table_html(["neuron", "value"], [[c.label, c.value] for c in neurons]))
    lead = top[0] if top else None
    share = f" ({lead.value / rec.residual:.0%} of it)" if lead and rec.residual else ""
    fact = (f"h{rec.layer}[pos {rec.position}, dim {rec.dim}] = {fmt(rec.residual)} is written mainly by "
            f"{lead.label}{share}." if lead else "")
    return "\n".join(parts), ({"writers": fact} if fact else {})


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


def intervention_view(rec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Perplexity interventions (``intervene.json`` as a dict): the table, notes and a one-line fact."""
    table = rec.get("table") or []
    parts = [notes_html(rec.get("notes") or []), records_table(table)]
    def line(row: dict[str, Any]) -> str:
        if "condition" in row and "ppl" in row:
            ratio = f", x{fmt(row['ratio'], 3)} of the original" if row.get("ratio") is not None else ""
            return f"{row['condition']} ({row.get('variant', '-')}): PPL {fmt(row['ppl'], 4)}{ratio}"
        return ", ".join(f"{k} {fmt(v)}" for k, v in list(row.items())[:3])

    fact = "; ".join(line(row) for row in table[:5])
    return "\n".join(parts), ({"removal": f"Interventions (perplexity): {fact}."} if fact else {})


def generic_view(rec: dict[str, Any], *, skip: Sequence[str] = ("provenance",)) -> tuple[str, dict[str, str]]:
    """Any result dict: notes/conclusion as bullets, lists of dicts as tables, other fields as a key table."""
    parts = [notes_html(list(rec.get("notes") or []) + list(rec.get("conclusion") or []))]
    scalars = []
    for key, value in rec.items():
        if key in skip or key in ("notes", "conclusion"):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"<h3>{sh.text(key)}</h3>" + records_table(value, max_rows=30))
        else:
            scalars.append([key, value])
    if scalars:
        parts.insert(1, table_html(["field", "value"], scalars))
    return "\n".join(parts), {}

__all__ = [
    "NOT_COMPUTED", "Section", "contributions_figure", "effects_figure", "figure_fragment", "fmt",
    "head_scores_figure", "heads_view", "attribution_view", "ablation_view", "intervention_view", "generic_view", "notes_html", "records_table", "report_page", "section_html", "summary_html",
    "table_html",
]
