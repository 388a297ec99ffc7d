"""The contract of an analysis folder: one :class:`Analysis` value, listed in the registry.

>>> from mi_massive.analyses.registry import ANALYSES, get
>>> get("scan").json_name
'scan.json'
>>> [a.name for a in ANALYSES][:3]
['scan', 'attention', 'heads']

Every folder under :mod:`mi_massive.analyses` defines ``ANALYSIS = Analysis(...)`` in its
``__init__.py``: the public function (``run``, what ``mm.<name>`` is), the record class it returns
(``record``; ``record.load(path)`` reads its JSON back), the file its command writes
(``json_name``), the typer command functions (``commands``: CLI name -> function), the figures of
a record (``figures``: record -> {file stem: plotly figure}) and, when the analysis belongs in the
report, how the report computes and shows it (``report``). The CLI, the report and the notebooks
loop over :data:`mi_massive.analyses.registry.ANALYSES`; nothing else names an analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class ReportHooks:
    """How ``mi-massive report`` uses an analysis.

    ``section``/``title``: the section's id and heading in ``report.html`` and ``report.json``.
    ``view(record) -> (html, facts)`` renders the section body and the summary facts it answers
    (keys of :data:`mi_massive.report.page.SUMMARY_QUESTIONS`). ``compute(model, corpus,
    scan_result) -> record`` runs it on the report's model and corpus (raise
    :class:`~mi_massive.errors.MiMassiveError` when it does not apply); None: the section is only
    loaded from an earlier command's JSON. ``figures(record)`` lists figures shown above the view.
    ``filename`` (default: the analysis' ``json_name``) and ``load`` (default: ``record.load``)
    say where an earlier result is and how to read it.
    """

    section: str
    title: str
    view: Callable[[Any], tuple[str, dict[str, str]]]
    compute: Callable[..., Any] | None = None
    figures: Callable[[Any], list[Any]] | None = None
    filename: str | None = None
    load: Callable[[Path], Any] | None = None


@dataclass(frozen=True)
class Analysis:
    """One analysis: its function, record, command(s), figures and report hooks (see the module doc)."""

    name: str
    question: str
    run: Callable[..., Any]
    record: type
    json_name: str
    commands: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    figures: Callable[[Any], dict[str, Any]] | None = None
    report: ReportHooks | None = None
