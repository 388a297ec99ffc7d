"""mi_massive: massive activations and attention sinks in transformer LMs, on TransformerLens hook points.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> corpus = mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True)
>>> result = mm.scan(model, corpus, progress=False)
>>> result.summary["dims"][0]["dim"], result.summary["first_layer"]   # the planted dim 5, from block 1
(5, 1)
>>> round(max(e.value for e in result.massive))                      # residual units, at position 0 (BOS)
3000

Data flows one way:

1. **load** a model (:func:`load_model`, :func:`load_toy`) and a corpus (:func:`load_corpus`,
   :func:`text_corpus`, ...);
2. **run** it through the one forward engine (:func:`run_capture`, :func:`iter_corpus`), with hook
   names from :func:`act_name` and hook factories from :mod:`mm.hooks <mi_massive.core.hooks>`;
3. **analyse**: one function per analysis (``mm.scan``, ``mm.heads``, ``mm.attribute``, ``mm.ablate``,
   ``mm.patch``, ``mm.sweep``, ``mm.intervene``, ``mm.mlp``, ``mm.svd``, ``mm.tokens``,
   ``mm.attention``, ``mm.compare_variants``), each the ``run`` of its entry in :data:`ANALYSES`;
4. **record**: each returns a typed record (``ScanResult``, ``HeadScores``, ...) with ``save(path)``,
   ``Class.load(path)``, ``to_dataframe()`` and a notebook view;
5. **view**: plotly figures as objects (:mod:`mm.figures <mi_massive.figures>`), circuitsvis, and
   :func:`report` (one offline HTML page of every analysis);
6. **command**: ``mi-massive <analysis>`` writes the record's JSON and figures (:mod:`mi_massive.cli`).

Everything a notebook needs is here; ``mi_massive.core`` / ``mi_massive.analyses`` are the layout
behind it (see README "Layout").
"""

from mi_massive.core.env import quiet_hf

quiet_hf()

# ------------------------------------------------------------------ errors
from mi_massive.errors import MiMassiveError, NumericalOverflowError  # noqa: E402

# ------------------------------------------------------------------ 1. load: models and corpora
from mi_massive.core.loading import (ModelInfo, PlantedActivation, ToyConfig, build_toy_hf, list_models,  # noqa: E402
                                     load_model, load_toy, model_info, toy_tokenizer)
from mi_massive.core.corpus import (Corpus, builtin_corpus, builtin_text, encode, file_corpus, load_corpus,  # noqa: E402
                                    text_corpus, wikitext_corpus)

# ------------------------------------------------------------------ 2. run: engine, hook names, hook factories
from mi_massive.core.engine import iter_corpus, run_capture  # noqa: E402
from mi_massive.core.names import act_name, hook_layer, position_class, resid_names  # noqa: E402
from mi_massive.core import hooks  # noqa: E402  (mm.hooks.ablate_heads, ...)
from mi_massive.core.hooks import (ablate_attention, ablate_heads, ablate_mlps, ablate_neurons,  # noqa: E402
                                   block_keys, patch_hooks, reference_means)
from mi_massive.core.stats import bootstrap_ci, summarize  # noqa: E402
from mi_massive.core.io import read_json, write_json  # noqa: E402

# ------------------------------------------------------------------ 3. analyse: one function per analysis
from mi_massive.analyses.registry import ANALYSES, get as analysis  # noqa: E402

scan = analysis("scan").run
attention = analysis("attention").run
heads = analysis("heads").run
attribute = analysis("attribute").run
ablate = analysis("ablate").run
patch = analysis("patch").run
sweep = analysis("sweep").run
intervene = analysis("intervene").run
mlp = analysis("mlp").run
svd = analysis("svd").run
tokens = analysis("tokens").run
compare_variants = analysis("variants").run

# helpers of single analyses (their inputs, and the few views a notebook composes by hand)
from mi_massive.analyses.scan.run import SUN_SENTENCE, feature_view_layer, sentence_activations  # noqa: E402
from mi_massive.analyses.attention.run import write_attention  # noqa: E402
from mi_massive.analyses.ablate.run import AblationSpec  # noqa: E402
from mi_massive.analyses.intervene.run import split_corpus  # noqa: E402
from mi_massive.analyses.variants.run import TrainedVariant, attention_mass, base_hf, train_variant  # noqa: E402

# mitigation variants (built on the HF model, then bridged) and the small training loop
from mi_massive.core.variants import (DyT, TVRConfig, VariantSpec, apply_variant, bridge_variant,  # noqa: E402
                                      detect_structure, set_kv_bias_masked, tvr_rescale)
from mi_massive.training import TokenStream, TrainConfig, TVRCallback, evaluate, train  # noqa: E402

# ------------------------------------------------------------------ 4. record: every analysis' record class
ScanResult = analysis("scan").record
AttentionResult = analysis("attention").record
HeadScores = analysis("heads").record
AttributionResult = analysis("attribute").record
AblationResult = analysis("ablate").record
PatchingResult = analysis("patch").record
SweepResult = analysis("sweep").record
InterventionResult = analysis("intervene").record
MlpResult = analysis("mlp").record
SvdResult = analysis("svd").record
TokensResult = analysis("tokens").record
VariantComparison = analysis("variants").record
from mi_massive.core.records import Record  # noqa: E402
from mi_massive.analyses.scan.record import LayerRecord, MassiveEntry  # noqa: E402
from mi_massive.analyses.heads.record import HeadScore  # noqa: E402
from mi_massive.analyses.attribute.record import Contribution  # noqa: E402
from mi_massive.analyses.ablate.record import Condition, Effect  # noqa: E402
from mi_massive.analyses.variants.record import VariantReport  # noqa: E402

# ------------------------------------------------------------------ 5. view: figures and the report
from mi_massive import figures  # noqa: E402  (mm.figures.layerwise_figure, ...)
from mi_massive.report import build_report as report  # noqa: E402
from mi_massive.study import StudyRecord, load_study, study  # noqa: E402
# vision transformers: ViT / DINOv2 (registers) / CLIP vision towers, generated images
from mi_massive.core.loading.vit import load_vision  # noqa: E402
from mi_massive.core.corpus.images import image_corpus, synthetic_images  # noqa: E402
from mi_massive.analyses.heads.run import vision_heads  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    # errors
    "MiMassiveError", "NumericalOverflowError",
    # load
    "Corpus", "ModelInfo", "PlantedActivation", "ToyConfig", "build_toy_hf", "builtin_corpus", "builtin_text",
    "encode", "file_corpus", "list_models", "load_corpus", "load_model", "load_toy", "model_info", "text_corpus",
    "toy_tokenizer", "wikitext_corpus",
    # run
    "ablate_attention", "ablate_heads", "ablate_mlps", "ablate_neurons", "act_name", "block_keys",
    "bootstrap_ci", "hook_layer", "hooks", "iter_corpus", "patch_hooks", "position_class", "read_json",
    "reference_means", "resid_names", "run_capture", "summarize", "write_json",
    # analyse
    "ANALYSES", "analysis", "ablate", "attention", "attribute", "compare_variants", "heads", "intervene", "mlp",
    "patch", "scan", "svd", "sweep", "tokens",
    "AblationSpec", "SUN_SENTENCE", "feature_view_layer", "sentence_activations", "split_corpus",
    "write_attention",
    # variants and training
    "DyT", "TVRCallback", "TVRConfig", "TokenStream", "TrainConfig", "TrainedVariant", "VariantSpec",
    "apply_variant", "attention_mass", "base_hf", "bridge_variant", "detect_structure", "evaluate",
    "load_variant", "save_variant", "set_kv_bias_masked", "train", "train_variant", "tvr_rescale",
    # record
    "AblationResult", "AttentionResult", "AttributionResult", "Condition", "Contribution", "Effect", "HeadScore",
    "HeadScores", "InterventionResult", "LayerRecord", "MassiveEntry", "MlpResult", "PatchingResult", "Record",
    "ScanResult", "SvdResult", "SweepResult", "TokensResult", "VariantComparison", "VariantReport",
    # view
    "figures", "report", "study", "load_study", "StudyRecord",
    # vision
    "load_vision", "image_corpus", "synthetic_images", "vision_heads",
]


def __getattr__(name: str):
    """``save_variant`` / ``load_variant`` import safetensors lazily (see :mod:`mi_massive.core.variants`)."""
    if name in ("save_variant", "load_variant"):
        from mi_massive.core import variants

        return getattr(variants, name)
    raise AttributeError(f"module 'mi_massive' has no attribute '{name}'")
