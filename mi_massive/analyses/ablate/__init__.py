"""``ablate``: what does removing heads / attention / MLPs / neurons do, beyond noise?"""

from mi_massive.analyses.ablate.command import ablate_command
from mi_massive.analyses.ablate.figures import figures
from mi_massive.analyses.ablate.record import AblationResult
from mi_massive.analyses.ablate.report import ablation_view, compute
from mi_massive.analyses.ablate.run import AblationSpec, ablate, run_ablations
from mi_massive.core.analysis import Analysis, ReportHooks

ANALYSIS = Analysis(
    name="ablate",
    question="what does removing heads / attention / MLPs / neurons do, beyond noise?",
    run=ablate,
    record=AblationResult,
    json_name="ablation.json",
    commands={"ablate": ablate_command},
    figures=figures,
    report=ReportHooks(section="ablation", title="Ablations with noise floors", view=ablation_view, compute=compute),
)

__all__ = ["ANALYSIS", "AblationResult", "AblationSpec", "ablate", "run_ablations"]
