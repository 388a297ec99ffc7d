"""``patch``: which activations carry the clean -> corrupted difference?"""

from mi_massive.analyses.patch.command import patch_command
from mi_massive.analyses.patch.figures import figures
from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.analyses.patch.run import patch
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="patch",
    question="which activations carry the clean -> corrupted difference?",
    run=patch,
    record=PatchingResult,
    json_name="patching.json",
    commands={"patch": patch_command},
    figures=figures,
)

__all__ = ["ANALYSIS", "PatchingResult", "patch"]
