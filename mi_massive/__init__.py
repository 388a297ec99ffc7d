"""mi_massive: massive activations and attention sinks in transformer LMs, on TransformerLens hook points.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> corpus = mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True)
>>> mm.scan(model, corpus, progress=False).summary["dims"][0]["dim"]
5

Data flows one way: **load** a model (:mod:`mi_massive.core.loading`) and a corpus
(:mod:`mi_massive.core.corpus`) -> **run** it through the one engine (:mod:`mi_massive.core.engine`,
with hook factories from :mod:`mi_massive.core.hooks`) -> **analyse** (one folder per analysis under
:mod:`mi_massive.analyses`) -> **record** (typed :class:`~mi_massive.core.records.Record`, atomic
JSON) -> **view** (plotly figures, circuitsvis, the report) -> **command** (``mi-massive``).
Every analysis is one function here (``mm.scan``, ``mm.heads``, ...), listed in
:data:`mi_massive.analyses.registry.ANALYSES`.
"""

from mi_massive.core.env import quiet_hf

quiet_hf()

from mi_massive.analyses.registry import ANALYSES  # noqa: E402
from mi_massive.core.corpus import (Corpus, builtin_corpus, file_corpus, load_corpus, text_corpus,  # noqa: E402
                                    wikitext_corpus)
from mi_massive.core.loading import list_models, load_model, load_toy, model_info  # noqa: E402
from mi_massive.errors import MiMassiveError, NumericalOverflowError  # noqa: E402
from mi_massive.analyses.scan import ScanResult, scan  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ANALYSES", "Corpus", "MiMassiveError", "NumericalOverflowError", "ScanResult", "builtin_corpus", "file_corpus",
    "list_models", "load_corpus", "load_model", "load_toy", "model_info", "scan", "text_corpus", "wikitext_corpus",
]
