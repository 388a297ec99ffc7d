"""``mlp``: how does the MLP build the massive value (activation flow, neurons)?

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = mlp(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True))
>>> r.layer, r.dim, r.contributions.top_neurons[0].massive > 2999
(1, 5, True)
"""

from mi_massive.analyses.mlp.command import mlp_command
from mi_massive.analyses.mlp.figures import figures, mlp_flow_figure, top_neurons_figure
from mi_massive.analyses.mlp.record import (Checkpoint, Contributions, MassiveToken, MlpResult, ReconstructionCheck,
                                            TopNeuron, TopUnit)
from mi_massive.analyses.mlp.run import mlp, mlp_internals
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="mlp",
    question="how does the MLP build the massive value (activation flow, neurons)?",
    run=mlp,
    record=MlpResult,
    json_name="mlp.json",
    commands={"mlp": mlp_command},
    figures=figures,
    report=ReportHooks(section="mlp", title="MLP internals", view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: mlp(model, corpus, options=FROM_REPORT),
                       figures=lambda r: list(figures(r).values())),
)

__all__ = ["ANALYSIS", "Checkpoint", "Contributions", "MassiveToken", "MlpResult", "ReconstructionCheck", "TopNeuron",
           "TopUnit", "figures", "mlp", "mlp_command", "mlp_internals", "mlp_flow_figure", "top_neurons_figure"]
