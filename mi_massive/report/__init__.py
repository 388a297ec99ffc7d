"""The report: every analysis of the registry that applies, on one model and corpus, as one offline page."""

from mi_massive.report.run import build_report

__all__ = ["build_report"]
