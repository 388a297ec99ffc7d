"""``mlp``: how does the MLP build the massive value (activation flow, neurons)?"""

from mi_massive.analyses.mlp.command import mlp_command
from mi_massive.analyses.mlp.figures import mlp_flow_figure, top_neurons_figure
from mi_massive.analyses.mlp.record import MlpResult
from mi_massive.analyses.mlp.run import mlp_internals
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="mlp",
    question="how does the MLP build the massive value (activation flow, neurons)?",
    run=mlp_internals,
    record=MlpResult,
    json_name="mlp.json",
    commands={"mlp": mlp_command},
    report=ReportHooks(section="mlp", title="MLP internals", view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: mlp_internals(model, corpus, options=FROM_REPORT),
                       figures=lambda r: [mlp_flow_figure(r), top_neurons_figure(r)]),
)
