"""``scan``: where are the massive activations (layer, position, dim, token)?"""

from mi_massive.analyses.scan.command import scan_command
from mi_massive.analyses.scan.figures import figures
from mi_massive.analyses.scan.record import ScanResult
from mi_massive.analyses.scan.run import scan
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="scan",
    question="where are the massive activations (layer, position, dim, token)?",
    run=scan,
    record=ScanResult,
    json_name="scan.json",
    commands={"scan": scan_command},
    figures=figures,
)

__all__ = ["ANALYSIS", "ScanResult", "scan"]
