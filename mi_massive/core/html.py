"""HTML building blocks shared by every analysis' views and the report.

Figures as self-contained files (plotly.js inlined, works offline; PNG when a local Chromium is
there), figure fragments for pages that inline plotly.js once, and escaped tables and note lists.
Every string that reaches a page goes through :mod:`mi_massive.core.safe_html`.

>>> fmt(0.000123456), fmt(3), fmt(None)
('0.0001235', '3', '—')
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from mi_massive.core import safe_html as sh

from mi_massive.core.io import atomic_write_bytes, atomic_write_text


def figure_html(fig, *, full_html: bool = True) -> str:
    """The figure as HTML with the whole plotly.js bundle inlined (no CDN, no network)."""
    return fig.to_html(include_plotlyjs=True if full_html else False, full_html=full_html,
                       config={"displaylogo": False, "responsive": True})


def save_figure(fig, path: str | Path, *, png: bool = True) -> list[Path]:
    """Write ``path`` (.html, standalone) and, if a static renderer works offline, a .png beside it.

    PNG export needs kaleido with a local Chromium; when that is not available the PNG is skipped
    (the HTML is always written). Returns the files written.
    """
    path = Path(path)
    written = [atomic_write_text(path.with_suffix(".html"), figure_html(fig))]
    if png:
        # the headless browser behind kaleido logs its own recoverable protocol hiccups with tracebacks
        # ("JSONError decoding message. Ignoring"); they are not ours to show
        logging.getLogger("choreographer").setLevel(logging.CRITICAL)
        try:
            data = fig.to_image(format="png", width=1000, height=650, scale=1)
        except Exception:  # no kaleido/Chromium: HTML only
            return written
        written.append(atomic_write_bytes(path.with_suffix(".png"), data))
    return written


def figure_fragment(fig: go.Figure) -> str:
    """A plotly figure as a div + script without plotly.js (the page inlines plotly.js once)."""
    return figure_html(fig, full_html=False)


def plotlyjs_script() -> str:
    """A ``<script>`` with the whole plotly.js bundle (offline); once per page."""
    return sh.script(_plotlyjs())


@functools.lru_cache(maxsize=1)
def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return sh.inline_js(get_plotlyjs())


# ------------------------------------------------------------ tables and notes
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
