"""``sweep``: what does ablating each single head (and each MLP) do to a massive entry and the loss?"""

from mi_massive.analyses.sweep.command import sweep_command
from mi_massive.analyses.sweep.figures import figures
from mi_massive.analyses.sweep.record import SweepResult
from mi_massive.analyses.sweep.run import head_sweep, sweep
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="sweep",
    question="what does ablating each single head (and each MLP) do to a massive entry and the loss?",
    run=sweep,
    record=SweepResult,
    json_name="sweep.json",
    commands={"sweep": sweep_command},
    figures=figures,
)

__all__ = ["ANALYSIS", "SweepResult", "head_sweep", "sweep"]
