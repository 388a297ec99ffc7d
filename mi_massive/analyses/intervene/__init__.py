"""``intervene``: does the model need the massive values (zero vs mean vs control, perplexity)?

>>> import mi_massive as mm
>>> from mi_massive.core.corpus import builtin_corpus
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> ev, cal = split_corpus(builtin_corpus(model, n_samples=4, seq_len=16, prepend_bos=True), 2)
>>> r = intervene(model, ev, cal, n_control=1, variants=("one",), n_boot=20)
>>> r.table[0].condition, r.table[0].ratio
('original', 1.0)
"""

from mi_massive.analyses.intervene.command import intervene_command
from mi_massive.analyses.intervene.figures import figures, ppl_figure, regeneration_figure
from mi_massive.analyses.intervene.record import (Calibration, CalibrationMean, Evaluation, InterventionResult,
                                                  InterventionRun, InterventionTarget, Perplexity, PplRow, Profile,
                                                  Regeneration)
from mi_massive.analyses.intervene.report import compute, intervention_view
from mi_massive.analyses.intervene.run import intervene, split_corpus
from mi_massive.core.analysis import Analysis, ReportHooks

ANALYSIS = Analysis(
    name="intervene",
    question="does the model need the massive values (zero vs mean vs control, perplexity)?",
    run=intervene,
    record=InterventionResult,
    json_name="intervene.json",
    commands={"intervene": intervene_command},
    figures=figures,
    report=ReportHooks(section="intervention", title="Interventions and perplexity", view=intervention_view,
                       compute=compute, figures=lambda r: list(figures(r).values())),
)

__all__ = ["ANALYSIS", "Calibration", "CalibrationMean", "Evaluation", "InterventionResult", "InterventionRun",
           "InterventionTarget", "Perplexity", "PplRow", "Profile", "Regeneration", "figures", "intervene",
           "intervene_command",
           "ppl_figure", "regeneration_figure", "split_corpus"]
