"""``intervene``: does the model need the massive values (zero vs mean vs control, perplexity)?"""

from mi_massive.analyses.intervene.command import intervene_command
from mi_massive.analyses.intervene.figures import ppl_figure, regeneration_figure
from mi_massive.analyses.intervene.record import InterventionResult
from mi_massive.analyses.intervene.report import compute, intervention_view
from mi_massive.analyses.intervene.run import intervene
from mi_massive.core.analysis import Analysis, ReportHooks

ANALYSIS = Analysis(
    name="intervene",
    question="does the model need the massive values (zero vs mean vs control, perplexity)?",
    run=intervene,
    record=InterventionResult,
    json_name="intervene.json",
    commands={"intervene": intervene_command},
    report=ReportHooks(section="intervention", title="Interventions and perplexity",
                       view=lambda r: intervention_view(r.to_dict()), compute=compute,
                       figures=lambda r: [ppl_figure(r), regeneration_figure(r)]),
)
