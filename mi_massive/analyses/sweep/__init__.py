"""``sweep``: what does ablating each single head do to the massive entries and the loss?"""

from mi_massive.analyses.sweep.record import SweepResult
from mi_massive.analyses.sweep.run import head_sweep
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="sweep",
    question="what does ablating each single head do to the massive entries and the loss?",
    run=head_sweep,
    record=SweepResult,
    json_name="sweep.json",
    commands={},
)
