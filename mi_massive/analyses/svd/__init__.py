"""``svd``: is W_out's top singular direction the massive dim's writer?"""

from mi_massive.analyses.svd.command import svd_command
from mi_massive.analyses.svd.figures import spectrum_figure, svd_regression_figure
from mi_massive.analyses.svd.record import SvdResult
from mi_massive.analyses.svd.run import svd_analysis
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="svd",
    question="is W_out's top singular direction the massive dim's writer?",
    run=svd_analysis,
    record=SvdResult,
    json_name="svd.json",
    commands={"svd": svd_command},
    report=ReportHooks(section="svd", title="SVD of the MLP output projection", view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: svd_analysis(model, corpus, options=FROM_REPORT),
                       figures=lambda r: [spectrum_figure(r), svd_regression_figure(r)]),
)
