"""HTML building blocks shared by every analysis' views and the report.

Figures as self-contained files (plotly.js inlined, works offline; PNG when a local Chromium is
there), figure fragments for pages that inline plotly.js once, and escaped tables and note lists.
Every string that reaches a page goes through :mod:`mi_massive.core.safe_html`.

>>> fmt(0.000123456), fmt(3), fmt(None), fmt_ci(0.1012, 0.1355)
('0.000123', '3', '—', '0.101–0.136')
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


# ------------------------------------------------------------ numbers
def fmt(value: Any, digits: int = 3) -> str:
    """A number as the report shows it: floats to ``digits`` significant digits, ints exact, None as a dash.

    >>> fmt(23147.1), fmt(-0.0123456), fmt(1.0), fmt(2.5e-7), fmt(3.2e9), fmt(7), fmt(True)
    ('23100', '-0.0123', '1.00', '2.50e-7', '3.20e9', '7', 'yes')

    Plain decimals from 1e-4 up to 1e6 (never ``3e+03``); scientific notation outside that range.
    Rounding happens once, so ``999.7`` reads ``1000`` (not ``999.7`` or ``1.00e+03``). NaN reads
    ``n/a``; booleans ``yes``/``no``; anything else ``str(value)``.
    """
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        mag = math.floor(math.log10(abs(value)))
        rounded = round(value, digits - 1 - mag)
        if rounded != 0:
            mag = math.floor(math.log10(abs(rounded)))  # 999.7 -> 1000.0: one more digit before the point
        if -4 <= mag < 6:
            return f"{rounded:.{max(0, digits - 1 - mag)}f}"
        return _sci(value, digits)
    return str(value)


def fmt_signed(value: float | None, digits: int = 3) -> str:
    """:func:`fmt` with an explicit ``+`` on positive numbers (changes, effects).

    >>> fmt_signed(12.345), fmt_signed(-0.5), fmt_signed(0.0)
    ('+12.3', '-0.500', '0')
    """
    text = fmt(value, digits)
    return "+" + text if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else text


def fmt_pct(value: float | None, digits: int = 3) -> str:
    """A ratio as a signed percentage with ``digits`` significant digits.

    >>> fmt_pct(-0.99412), fmt_pct(0.05), fmt_pct(None)
    ('-99.4%', '+5.00%', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    return fmt_signed(100.0 * value, digits) + "%"


def fmt_ci(low: float | None, high: float | None, n: int | None = None, digits: int = 3) -> str:
    """A 95% interval as ``a–b`` (en dash; spaced when a bound is negative), or why there is none.

    >>> fmt_ci(0.1012, 0.13549), fmt_ci(-2.4e4, -2.19e4), fmt_ci(0.3, 0.3, n=1), fmt_ci(None, None)
    ('0.101–0.135', '-24000 – -21900', 'n/a (1 sequence)', '—')
    >>> fmt_ci(1.0004, 1.0031), fmt_ci(7.76e5, 3.12e6)   # more digits until the bounds differ; one notation
    ('1.000–1.003', '7.76e5–3.12e6')
    >>> fmt_ci(1.0000001, 1.0000004)                     # up to 2 more digits, then as usual
    '1.00–1.00'

    ``n``: the number of sequences behind it; with fewer than 2 the interval has no spread to show
    and reads ``n/a (1 sequence)`` instead of a zero-width ``x–x``.
    """
    if n is not None and n < 2:
        return f"n/a ({n} sequence{'s' if n != 1 else ''})"
    if low is None or high is None:
        return "\u2014"
    low, high = float(low), float(high)
    for d in range(digits, digits + 3):  # a narrow interval gets the digits that tell its bounds apart
        a, b = fmt(low, d), fmt(high, d)
        if a != b or low == high:
            break
    else:  # narrower still: the bounds differ in float noise only; show them at the usual precision
        d = digits
        a, b = fmt(low, d), fmt(high, d)
    if ("e" in a) != ("e" in b):  # one notation for both bounds
        a, b = (_sci(low, d), _sci(high, d))
    return f"{a} \u2013 {b}" if a.startswith("-") or b.startswith("-") else f"{a}\u2013{b}"


def _sci(value: float, digits: int) -> str:
    if value == 0 or not math.isfinite(value):
        return fmt(value, digits)
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class Markup(str):
    """A string that is already safe HTML (a table cell that :func:`table_html` must not escape)."""


def link(href: str, label: str | None = None) -> Markup:
    """A relative link to a file next to the page (e.g. a section's JSON), escaped.

    >>> link("scan.json")
    '<a href="scan.json">scan.json</a>'
    """
    return Markup(f'<a href="{sh.text(href)}">{sh.text(label if label is not None else href)}</a>')


# ------------------------------------------------------------ tables and notes
SHORT_ROWS = 10  # rows a table shows before "show all"
FULL_ROWS = 2000  # rows kept in the page behind "show all" (the rest only in the JSON file)


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], *, max_rows: int = SHORT_ROWS,
               full_rows: int = FULL_ROWS, source: str | None = None) -> str:
    """An HTML table of the first ``max_rows`` rows; the whole table (up to ``full_rows``) one click away.

    >>> html = table_html(["n"], [[i] for i in range(12)], max_rows=3, source="x.json")
    >>> html.count("<tr>"), "show all 12 rows" in html, '<a href="x.json">' in html
    (17, True, True)

    Every cell is escaped (:class:`Markup` cells excepted) and formatted by :func:`cell_text`
    (3 significant digits; lists and dicts as short readable text, never raw JSON). Longer tables
    show their first rows, then a ``<details>`` element holding all rows (no script, works offline);
    past ``full_rows`` the rest is in ``source`` (a JSON file beside the page), linked.
    """
    rows = list(rows)

    def table(part: Sequence[Sequence[Any]]) -> str:
        head = "".join(f"<th>{sh.text(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>" for row in part)
        return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'

    where = f" in {link(source)}" if source else " in the JSON file"
    if len(rows) <= max_rows:
        return table(rows)
    shown = min(len(rows), full_rows)
    more = (f'<p class="muted">{len(rows) - shown} more rows{where}.</p>' if len(rows) > shown else
            (f'<p class="muted">Also{where}.</p>' if source else ""))
    return (table(rows[:max_rows])
            + f'<details><summary>show all {len(rows)} rows</summary>{table(rows[:shown])}{more}</details>')


def _cell_html(value: Any) -> str:
    return str(value) if isinstance(value, Markup) else sh.text(cell_text(value))


def cell_text(value: Any, *, max_items: int = 6) -> str:
    """A table cell as text: numbers by :func:`fmt`, short lists joined, dicts as ``key: value`` pairs.

    >>> cell_text([0.123456, 2, None]), cell_text(list(range(10))), cell_text({"a": 1.23456, "b": [1, 2]})
    ('0.123, 2, —', '0, 1, 2, 3, 4, 5, … (10 values)', 'a: 1.23; b: 1, 2')
    >>> cell_text([{"x": 1}, {"x": 2}])
    '2 records'
    """
    if isinstance(value, dict):
        if any(isinstance(v, (dict, list)) and v and isinstance(next(iter(v)) if isinstance(v, dict) else v[0],
                                                                  (dict, list)) for v in value.values()):
            return f"{len(value)} fields"
        items = list(value.items())
        text = "; ".join(f"{k}: {cell_text(_value(k, v), max_items=3)}" for k, v in items[:max_items])
        return text + (f"; … ({len(items)} fields)" if len(items) > max_items else "")
    if isinstance(value, (list, tuple)):
        if not value:
            return "(none)"
        if all(isinstance(v, dict) for v in value):
            return f"{len(value)} record{'s' if len(value) != 1 else ''}"
        if any(isinstance(v, (list, tuple, dict)) for v in value):
            return f"{len(value)} items"
        text = ", ".join(fmt(v) for v in value[:max_items])
        return text + (f", … ({len(value)} values)" if len(value) > max_items else "")
    return fmt(value)


def records_table(records: Sequence[dict[str, Any]], *, max_rows: int = SHORT_ROWS, source: str | None = None) -> str:
    """A table of dicts (columns = union of keys in first-seen order)."""
    if not records:
        return '<p class="muted">(empty)</p>'
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    return table_html(cols, [[_value(c, r.get(c)) for c in cols] for r in records], max_rows=max_rows, source=source)


def _value(key: Any, value: Any) -> Any:
    """A field's value for a cell: a ``*ci95`` / ``*_ci`` pair of numbers as an interval ``a–b``."""
    if str(key).endswith(("ci95", "_ci")) and isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return fmt_ci(*value)
    return value


def notes_html(notes: Sequence[str]) -> str:
    """A bullet list of plain-text notes (escaped)."""
    if not notes:
        return ""
    return "<ul>" + "".join(f"<li>{sh.text(n)}</li>" for n in notes) + "</ul>"


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None
                                           for v in value)


def _same_keys(value: dict) -> bool:
    """A dict of dicts with (mostly) the same scalar keys: one table row per key."""
    inner = list(value.values())
    return len(inner) >= 2 and all(isinstance(v, dict) and v for v in inner) and \
        len({tuple(sorted(v)) for v in inner}) == 1


def _fields(value: dict, name: str, depth: int, source: str | None) -> str:
    """One dict as a field table plus one sub-part per nested table or dict."""
    scalars, parts = [], []
    for key, v in value.items():
        label = f"{name}.{key}" if name else str(key)  # parts carry the path; field rows the key alone
        if _is_table(v):
            parts.append(_part(label, records_table(v, source=source), len(v), depth))
        elif isinstance(v, dict) and v and _same_keys(v):
            rows = [{"": k, **{c: cv for c, cv in inner.items()}} for k, inner in v.items()]
            parts.append(_part(label, records_table(rows, source=source), len(rows), depth))
        elif isinstance(v, dict) and v and any(isinstance(x, (dict, list)) for x in v.values()):
            parts.append(_part(label, _fields(v, label, depth + 1, source), len(v), depth))
        elif _is_numbers(v) and len(v) > 12:  # figure data (spectra, scatter points): the extremes, the rest in JSON
            finite = [x for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
            scalars.append([str(key), f"{len(v)} values" + (f", {fmt(min(finite))} to {fmt(max(finite))}"
                                                             if finite else "")])
        else:
            scalars.append([str(key), _value(key, v)])
    table = table_html(["field", "value"], scalars, max_rows=12, source=source) if scalars else ""
    return "\n".join([table, *parts])


def _part(label: str, html: str, size: int, depth: int) -> str:
    """A titled part: open at the top level when short, else folded (one click away)."""
    if depth == 0 and size <= SHORT_ROWS:
        return f"<h4>{sh.text(label)}</h4>\n{html}"
    return f"<details><summary>{sh.text(label)} ({size})</summary>\n{html}\n</details>"


def generic_view(rec: dict[str, Any], *, skip: Sequence[str] = ("provenance",),
                 source: str | None = None) -> tuple[str, dict[str, str]]:
    """Any result dict as readable HTML: notes/conclusion as bullets, then its fields.

    >>> html, facts = generic_view({"notes": ["n1"], "layer": 3, "r2": 0.98765, "rows": [{"a": 1}, {"a": 2}],
    ...                             "fits": {"start": {"r2": 0.5}, "other": {"r2": 0.25}}})
    >>> "<li>n1</li>" in html, "0.988" in html, "<h4>rows</h4>" in html, "<td>start</td>" in html, facts
    (True, True, True, True, {})

    Top-level numbers and strings form one field table; a list of dicts becomes a table; a dict of
    dicts with the same keys a table with one row per key; other nested dicts their own field
    tables; long lists of numbers (figure data) show their count and range. Every table is short,
    with the full rows one click away (:func:`table_html`). No cell is raw JSON.
    """
    notes = list(rec.get("notes") or []) + list(rec.get("conclusion") or [])
    body = _fields({k: v for k, v in rec.items() if k not in skip and k not in ("notes", "conclusion")}, "", 0, source)
    return "\n".join(p for p in [notes_html(notes), body] if p), {}


# ------------------------------------------------------------ figure axes
def log_axis(values: Sequence[float | None], **axis: Any) -> dict[str, Any]:
    """A plotly log axis whose ticks read as plain numbers: every decade, plus 2 and 5 when the data
    span fewer than three decades (``1``, ``10``, ``100``, ``1000``, ``10k``, ``100k``, ``1M``, ...).

    >>> ax = log_axis([3.0, 25000.0], title="|h|")
    >>> ax["type"], ax["ticktext"]
    ('log', ['1', '10', '100', '1000', '10k', '100k'])
    >>> log_axis([40.0, 60.0])["ticktext"]
    ['20', '50', '100']

    ``axis``: more plotly axis properties (``title``, ...). Non-positive and missing values are ignored.
    """
    pos = [float(v) for v in values if isinstance(v, (int, float)) and v is not None and math.isfinite(v) and v > 0]
    out: dict[str, Any] = {"type": "log", **axis}
    if not pos:
        return out
    lo, hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
    hi = max(hi, lo + 1)
    steps = (1,) if hi - lo >= 3 else (1, 2, 5)
    ticks = [m * 10.0 ** e for e in range(lo, hi + 1) for m in steps]
    ticks = [t for t in ticks if 10.0 ** lo <= t <= 10.0 ** hi]
    if steps != (1,):  # keep only the ticks around the data, plus one on each side
        inside = [i for i, t in enumerate(ticks) if min(pos) <= t <= max(pos)]
        first = max(0, (inside[0] if inside else next((i for i, t in enumerate(ticks) if t > min(pos)), 0)) - 1)
        last = min(len(ticks) - 1, (inside[-1] if inside else first) + 1)
        ticks = ticks[first:last + 1]
    out.update(tickmode="array", tickvals=ticks, ticktext=[_tick(t) for t in ticks])
    return out


def integer_axis(count: int, **axis: Any) -> dict[str, Any]:
    """A plotly axis of whole numbers (blocks, heads): a tick at every integer when there are few
    (``count`` <= 15), so no ``0.5`` ticks appear; plotly's own spacing otherwise.

    >>> integer_axis(3, title="block")
    {'title': 'block', 'tick0': 0, 'dtick': 1}
    >>> integer_axis(30, title="block")
    {'title': 'block'}
    """
    return {**axis, "tick0": 0, "dtick": 1} if count <= 15 else dict(axis)


def _tick(value: float) -> str:
    """``1000`` as is, then ``10k``, ``1M``, ``1G``; small values as ``0.01``, ``1e-05``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if value >= size:
            return f"{value / (1e3 if suffix == 'k' else size):g}{suffix}"
    return f"{value:g}"
