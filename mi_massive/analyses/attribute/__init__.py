"""``attribute``: who writes the massive entry (exact decomposition)?"""

from mi_massive.analyses.attribute.command import attribute_command
from mi_massive.analyses.attribute.figures import figures
from mi_massive.analyses.attribute.record import AttributionResult
from mi_massive.analyses.attribute.report import attribution_view, compute
from mi_massive.analyses.attribute.run import attribute
from mi_massive.core.analysis import Analysis, ReportHooks

ANALYSIS = Analysis(
    name="attribute",
    question="who writes the massive entry (exact decomposition)?",
    run=attribute,
    record=AttributionResult,
    json_name="attribution.json",
    commands={"attribute": attribute_command},
    figures=figures,
    report=ReportHooks(section="attribution", title="Who writes the massive entry (exact attribution)", view=attribution_view, compute=compute),
)

__all__ = ["ANALYSIS", "AttributionResult", "attribute"]
