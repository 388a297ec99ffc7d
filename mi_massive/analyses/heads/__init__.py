"""``heads``: how much does every head attend to position 0 and to the massive positions?"""

from mi_massive.analyses.heads.command import heads_command
from mi_massive.analyses.heads.figures import figures
from mi_massive.analyses.heads.record import HeadScores
from mi_massive.analyses.heads.report import compute, heads_view
from mi_massive.analyses.heads.run import head_scores, heads
from mi_massive.core.analysis import Analysis, ReportHooks

ANALYSIS = Analysis(
    name="heads",
    question="how much does every head attend to position 0 and to the massive positions?",
    run=heads,
    record=HeadScores,
    json_name="heads.json",
    commands={"heads": heads_command},
    figures=figures,
    report=ReportHooks(section="heads", title="Head sink scores", view=heads_view, compute=compute),
)

__all__ = ["ANALYSIS", "HeadScores", "head_scores", "heads"]
