"""One self-contained HTML report: a summary on top, then one section per analysis.

>>> s = Section("scan", "Massive-activation scan", "computed", facts={"dims": "dim 5."})
>>> "<b>Massive dims:</b> dim 5." in summary_html([s]), "not computed" in summary_html([s])
(True, True)

Pure rendering: :class:`Section` objects (built by :mod:`mi_massive.report.run`) and result
records go in, escaped HTML comes out. plotly.js and the circuitsvis bundle are inlined once in the
page head; every figure is a div + script without its own copy. A strict Content-Security-Policy
forbids any request (see :func:`mi_massive.core.safe_html.html_page`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from mi_massive.core import safe_html as sh
from mi_massive.analyses.attention.figures import circuitsvis_bundle_script
from mi_massive.core.html import Markup, link, plotlyjs_script, table_html

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


def _files(section: Section) -> Markup:
    return Markup(", ".join(link(f) for f in section.files))


def status_table(sections: Sequence[Section]) -> str:
    """Which analyses ran, were loaded, or are missing (and why); each JSON file linked (it lies beside the page)."""
    rows = [[s.title, s.status, _files(s), s.note] for s in sections]
    return table_html(["analysis", "status", "full data", "note"], rows, max_rows=len(rows) or 1)


def section_html(section: Section) -> str:
    """One ``<section>`` (the body of a missing analysis is a one-line note), ending with links to its JSON files."""
    body = section.body or f'<p class="muted">{NOT_COMPUTED}{": " + sh.text(section.note) if section.note else ""}</p>'
    files = f'\n<p class="muted">Full data: {_files(section)}</p>' if section.files and section.body else ""
    return f'<section id="{sh.text(section.id)}">\n<h2>{sh.text(section.title)}</h2>\n{body}{files}\n</section>'


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

