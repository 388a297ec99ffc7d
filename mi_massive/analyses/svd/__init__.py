"""``svd``: is W_out's top singular direction the massive dim's writer?

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = svd(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), n_boot=20)
>>> r.dim, r.alignment.massive_tokens.cos_mean > 0.99
(5, True)
"""

from mi_massive.analyses.svd.command import svd_command
from mi_massive.analyses.svd.figures import figures, spectrum_figure, svd_regression_figure
from mi_massive.analyses.svd.record import (AlignedToken, Alignment, ClassAlignment, Component, Fit, MassiveAlignment,
                                            Points, Regression, Spectrum, SvdResult)
from mi_massive.analyses.svd.run import svd, svd_analysis
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="svd",
    question="is W_out's top singular direction the massive dim's writer?",
    run=svd,
    record=SvdResult,
    json_name="svd.json",
    commands={"svd": svd_command},
    figures=figures,
    report=ReportHooks(section="svd", title="SVD of the MLP output projection", view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: svd(model, corpus, options=FROM_REPORT),
                       figures=lambda r: list(figures(r).values())),
)

__all__ = ["ANALYSIS", "AlignedToken", "Alignment", "ClassAlignment", "Component", "Fit", "MassiveAlignment", "Points",
           "Regression", "Spectrum", "SvdResult", "figures", "spectrum_figure", "svd", "svd_analysis", "svd_command",
           "svd_regression_figure"]
