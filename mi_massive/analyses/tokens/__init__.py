"""``tokens``: which tokens carry massive activations (function vs content words)?"""

from mi_massive.analyses.tokens.command import tokens_command
from mi_massive.analyses.tokens.figures import word_metric_figure
from mi_massive.analyses.tokens.record import TokensResult
from mi_massive.analyses.tokens.run import tokens_analysis
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="tokens",
    question="which tokens carry massive activations (function vs content words)?",
    run=tokens_analysis,
    record=TokensResult,
    json_name="tokens.json",
    commands={"tokens": tokens_command},
    report=ReportHooks(section="tokens", title="Which tokens carry massive activations", view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: tokens_analysis(model, corpus, options=FROM_REPORT),
                       figures=lambda r: [word_metric_figure(r)]),
)
