"""The report: every analysis of the registry that applies, on one model and corpus, as one offline page.

>>> import tempfile
>>> import mi_massive as mm
>>> from mi_massive.report import report
>>> from mi_massive.report.run import attention_section, scan_section
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> paths = report(model, "The cat sat on the mat.", tempfile.mkdtemp(), prepend_bos=True,
...                sections=[scan_section, attention_section])
>>> paths["report"].name, paths["json"].name
('report.html', 'report.json')

``report(model, data, out, ...)`` (= :func:`~mi_massive.report.run.build_report`) runs the scan and
the attention view, then every analysis of :data:`mi_massive.analyses.registry.ANALYSES` that has
report hooks (computed now, or loaded from an earlier command's JSON made with the same weights),
and writes ``out/report.html`` (self-contained, offline), ``out/report.json`` and each section's JSON.
"""

from mi_massive.report.run import build_report

report = build_report

__all__ = ["build_report", "report"]
