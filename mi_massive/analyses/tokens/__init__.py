"""``tokens``: which tokens carry massive activations (function vs content words)?

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = tokens(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), n_boot=20)
>>> r.classes[0].class_, r.classes[0].rate
('start', 1.0)
"""

from mi_massive.analyses.tokens.command import tokens_command
from mi_massive.analyses.tokens.figures import figures, word_metric_figure
from mi_massive.analyses.tokens.record import (GroupComparison, NonInitialEntry, TokenClass, TokensResult, TopToken,
                                               TriggerRate, WordComparison, WordMetrics)
from mi_massive.analyses.tokens.run import tokens, tokens_analysis
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

FROM_REPORT = {"from": "mi-massive report"}

ANALYSIS = Analysis(
    name="tokens",
    question="which tokens carry massive activations (function vs content words)?",
    run=tokens,
    record=TokensResult,
    json_name="tokens.json",
    commands={"tokens": tokens_command},
    figures=figures,
    report=ReportHooks(section="tokens", title="Which tokens carry massive activations",
                       view=lambda r: generic_view(r.to_dict()),
                       compute=lambda model, corpus, scan: tokens(model, corpus, options=FROM_REPORT),
                       figures=lambda r: list(figures(r).values())),
)

__all__ = ["ANALYSIS", "GroupComparison", "NonInitialEntry", "TokenClass", "TokensResult", "TopToken", "TriggerRate",
           "WordComparison", "WordMetrics", "figures", "tokens", "tokens_analysis", "tokens_command",
           "word_metric_figure"]
