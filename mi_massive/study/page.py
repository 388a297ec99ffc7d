"""``study.html``: the cross-model table and the depth profiles of every model overlaid (offline, one file).

>>> from mi_massive.study.record import ModelRow, StudyRecord
>>> rec = StudyRecord(settings={"corpus": "builtin"}, models=[ModelRow(model="m", folder="m")], profiles=[], units=[])
>>> "<table>" in study_page(rec), study_table(rec)[0][:3]
(True, ['model', 'architecture', 'parameters'])
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_massive.core import safe_html as sh
from mi_massive.core.html import figure_fragment, fmt, fmt_ci, log_axis, plotlyjs_script, table_html
from mi_massive.study.record import ModelRow, StudyRecord


def _with_ci(value: float | None, ci: list[float] | None, n: int | None) -> str:
    """A value and its 95% CI in parentheses, both as every page writes them (:func:`fmt`, :func:`fmt_ci`).

    >>> _with_ci(1.0004, [1.0001, 1.0031], 4), _with_ci(0.5, [-2.0, 3.0], None), _with_ci(None, None, 4)
    ('1.00 (1.000–1.003)', '0.500 (-2.00 – 3.00)', '—')
    """
    return f"{fmt(value)} ({fmt_ci(*ci, n=n)})" if value is not None and ci else fmt(value)


def _params(n: int | None) -> str:
    """A parameter count in K/M/B with :func:`fmt`'s 3 significant digits: ``_params(134_515_008)`` = ``'135M'``."""
    if n is None:
        return fmt(None)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{fmt(n / size)}{unit}"
    return str(n)


def _bos(row: ModelRow) -> str:
    if row.prepend_bos is None:
        return "\u2014"
    return ("prepended" if row.prepend_bos else "none") + (f" ({row.bos_source})" if row.bos_source else "")


def _row(row: ModelRow, n: int | None = None) -> list[Any]:
    """One model's cells; ``n``: the evaluation chunks behind the PPL CIs (the study's ``n_samples``)."""
    first = fmt(row.first_layer) + (f" of {row.n_layers}" if row.first_layer is not None and row.n_layers else "")
    heads = ", ".join(f"{h.label} {fmt(h.share)}" for h in row.top_heads) or "\u2014"
    writer = "\u2014" if row.writer is None else (
        row.writer + (f" ({fmt(100 * row.writer_share)}%)" if row.writer_share is not None else ""))
    return [row.model, row.architecture or "\u2014", _params(row.n_params), _bos(row), fmt(row.has_massive), first,
            ", ".join(map(str, row.dims[:4])) + (" ..." if len(row.dims) > 4 else "") or "\u2014",
            fmt(row.largest), fmt(row.largest_ratio), ", ".join(map(str, row.positions)) or "\u2014",
            ", ".join(repr(sh.display_token(t)) for t in row.tokens) or "\u2014",
            _with_ci(row.ppl_zero, row.ppl_zero_ci95, n), _with_ci(row.ppl_mean, row.ppl_mean_ci95, n), heads, writer,
            ", ".join(row.missing) or ""]


HEADER = ["model", "architecture", "parameters", "BOS", "massive", "first block", "dims", "largest |h|",
          "x median", "positions", "tokens", "PPL x orig., zero (95% CI)", "PPL x orig., mean (95% CI)",
          "top sink heads (share to pos 0)", "main writer (share)", "missing"]


# the table is wide: the page uses the whole window, cells do not wrap (the table scrolls sideways instead)
STYLE = ("<style>body { max-width: none; } .scroll table { font-size: .86em; } "
         ".scroll td { white-space: nowrap; } .scroll th { vertical-align: bottom; }</style>")


def study_table(record: StudyRecord) -> list[list[Any]]:
    """The table as rows of text (the header first); numbers as on every page (:mod:`mi_massive.core.html`)."""
    return [HEADER] + [_row(r, record.settings.get("n_samples")) for r in record.models]


def profiles_figure(record: StudyRecord) -> go.Figure:
    """Top-1 and median |h| of the block outputs against relative depth (0 = first block, 1 = last), all models."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top-1 |h| (mean over sequences)", "median |h|"),
                        horizontal_spacing=0.12)
    for i, p in enumerate(record.profiles):
        colour = f"hsl({(i * 137) % 360}, 65%, 45%)"
        for col, ys in ((1, p.top1), (2, p.median)):
            fig.add_trace(go.Scatter(x=p.relative_depth, y=ys, mode="lines+markers", name=p.model,
                                     legendgroup=p.model, showlegend=col == 1, line={"color": colour}),
                          row=1, col=col)
    for col, values in ((1, [v for p in record.profiles for v in p.top1]),
                        (2, [v for p in record.profiles for v in p.median])):
        fig.update_xaxes(title_text="relative depth (block / (n_layers - 1))", range=[-0.02, 1.02], row=1, col=col)
        fig.update_yaxes(**log_axis(values, title="|h| (residual units, log scale)"), row=1, col=col)
    fig.update_layout(title="Layer-wise profiles of all models", height=480, legend={"title": "model"},
                      margin={"t": 90})
    return fig


def study_page(record: StudyRecord) -> str:
    """The whole page: settings, the table, the profiles figure and the units that did not complete."""
    s = record.settings
    rows = study_table(record)
    failed = [[u.id, u.status, u.reason or ""] for u in record.units if u.status != "done"]
    corpus = (f"corpus {s.get('corpus')}, {s.get('n_samples')} sequences x {s.get('seq_len')} tokens, "
              f"seed {s.get('seed')}, dtype {s.get('dtype')}")
    body = [STYLE, f"<h1>Massive activations across {len(record.models)} model(s)</h1>",
            f'<p class="muted">{sh.text(corpus)}. PPL ratios: perplexity with the massive entries set to zero / to '
            f"their mean at their first massive block, over the original; intervals are paired bootstrap 95% CIs "
            f"over chunks. Each model's full results are in units/&lt;model&gt;/&lt;analysis&gt;.json.</p>",
            table_html(rows[0], rows[1:], max_rows=1000)]
    if record.profiles:
        body.append(figure_fragment(profiles_figure(record)))
    body.append("<h2>Units</h2>")
    body.append(table_html(["unit", "status", "reason"], failed) if failed else
                f'<p>All {len(record.units)} units complete.</p>')
    return sh.html_page("mi_massive study", "\n".join(body), head_scripts=[plotlyjs_script()])
