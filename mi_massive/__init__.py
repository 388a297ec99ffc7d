"""mi_massive: massive activations and attention sinks in transformer LMs, on TransformerLens hook points.

Layers of the package (each imports only from the ones above it):

* :mod:`mi_massive.loading` — model specs to hooked ``TransformerBridge`` objects (raw weights);
* :mod:`mi_massive.data` — deterministic token corpora;
* :mod:`mi_massive.runner` / :mod:`mi_massive.hooks` — forward passes, capture and intervention hooks;
* :mod:`mi_massive.analysis` — pure functions of tensors;
* :mod:`mi_massive.pipelines` — analyses run over a model and a corpus, returning typed results;
* :mod:`mi_massive.results` — typed records and atomic JSON;
* :mod:`mi_massive.views` — plotly / circuitsvis figures and HTML;
* :mod:`mi_massive.cli` — the ``mi-massive`` command.
"""

from mi_massive._env import quiet_hf

quiet_hf()

from mi_massive.data import Corpus, builtin_corpus, file_corpus, load_corpus, text_corpus, wikitext_corpus  # noqa: E402
from mi_massive.errors import MiMassiveError, NumericalOverflowError  # noqa: E402
from mi_massive.loading import list_models, load_model, load_toy, model_info  # noqa: E402
from mi_massive.pipelines.scan import scan  # noqa: E402
from mi_massive.results.scan import ScanResult  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Corpus", "MiMassiveError", "NumericalOverflowError", "ScanResult", "builtin_corpus", "file_corpus",
    "list_models", "load_corpus", "load_model", "load_toy", "model_info", "scan", "text_corpus", "wikitext_corpus",
]
