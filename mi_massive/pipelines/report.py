"""The report pipeline: run what exists, collect what was computed before, write one offline page.

The report is a list of sections; each is produced by a small function ``(ReportContext) -> Section``
(:data:`SECTIONS`). Scan and attention always run. The other analyses are optional:

1. if the analysis module is importable, it is run now on the same model and corpus and its JSON is
   written: through its ``report_record(model, corpus, scan)`` hook when it defines one (returns the
   result record), else through a small adapter here that calls its public function (guarded
   import: missing code is "not available", a MiMassiveError is "not applicable to this input");
2. otherwise, if ``<results dir>/<file>.json`` exists (written earlier by ``mi-massive heads`` /
   ``ablate`` / ``attribute`` / ``intervene`` / ``mlp`` / ``svd`` / ``tokens``) and was made with the
   same model weights (provenance fingerprint), it is loaded;
3. otherwise the section says "not computed" (and why), and so does the summary.

``options["skip"]`` lists section ids not to run (their earlier JSON is still loaded).

Every file is written atomically (temp file + rename), so re-running into the same directory
replaces ``report.html``/``report.json``/``scan.json``/``attention.json`` without a half-written state.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mi_massive.data import Corpus, text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.results.io import atomic_write_text, prepare_out_dir, read_json, utc_now, write_json
from mi_massive.views.report import NOT_COMPUTED, Section

REPORT_HOOK = "report_record"  # optional function of an analysis module: (model, corpus, scan) -> record
ATTENTION_MAX_TOKENS = 48  # tokens of the first sequence shown in the report's attention section


@dataclass
class ReportContext:
    """Inputs shared by the section functions; ``scan`` is filled by the scan section (runs first)."""

    model: Any
    corpus: Corpus
    out: Path
    results_dir: Path
    text: str | None = None
    scan: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    @property
    def fingerprint(self) -> str | None:
        from mi_massive.loading import model_info

        return model_info(self.model).fingerprint


# ------------------------------------------------------------------------------------- always run
def scan_section(ctx: ReportContext) -> Section:
    """Scan of the corpus: layer-wise top-k/median, the 3-D view of one sentence, the massive entries."""
    from mi_massive.pipelines.scan import SUN_SENTENCE, feature_view_layer, scan, sentence_activations
    from mi_massive.views import safe_html as sh
    from mi_massive.views.report import figure_fragment, fmt, table_html
    from mi_massive.views.scan_plots import feature_3d_figure, layerwise_figure

    opts = {k: ctx.options[k] for k in ("abs_threshold", "rel_threshold", "batch_size") if k in ctx.options}
    result = scan(ctx.model, ctx.corpus, progress=ctx.progress, **opts)
    ctx.scan = result
    result.save(ctx.out / "scan.json")
    layer = feature_view_layer(result)
    sentence = ctx.text if ctx.text is not None else SUN_SENTENCE
    h, toks = sentence_activations(ctx.model, sentence, layer, prepend_bos=ctx.corpus.prepend_bos)
    name = result.provenance["model"]["name"]
    coords: dict[tuple[int, int, int], list] = {}
    for e in result.massive:
        row = coords.setdefault((e.layer, e.position, e.dim), [e.layer, e.position, e.dim, e.token, 0, 0.0])
        row[4] += 1
        row[5] = max(row[5], abs(e.value))
    rows = sorted(coords.values(), key=lambda r: (r[0], -r[5]))
    body = "\n".join([
        f'<p class="text">Text: <code>{sh.text(ctx.text)}</code></p>' if ctx.text is not None else "",
        f"<p>{sh.text(len(ctx.corpus))} sequence(s), {sh.text(sum(ctx.corpus.lengths))} tokens, BOS "
        f"{'prepended' if ctx.corpus.prepend_bos else 'not prepended'}; residual stream after every block "
        "(blocks.L.hook_resid_post).</p>",
        figure_fragment(layerwise_figure(result)),
        figure_fragment(feature_3d_figure(h, [sh.plotly_label(t) for t in toks], layer=layer, model_name=name)),
        "<h3>Massive entries (block, position, dim)</h3>",
        table_html(["block", "position", "dim", "token", "sequences", "max |h|"], rows) if rows
        else "<p>No massive activation (|h| above the absolute and relative thresholds) in any block.</p>",
    ])
    s = result.summary
    if s["has_massive"]:
        dims = "; ".join(f"dim {d['dim']} (max |h| {fmt(d['max_abs'])}, blocks {d['layers'][0]}-{d['layers'][-1]})"
                         for d in s["dims"][:5])
        positions = ", ".join(f"{r['position']} ({r['count']} entries)" for r in s["positions"][:5])
        tokens = ", ".join(f"{sh.display_token(r['token'])!r} ({r['count']})" for r in s["tokens"][:5])
        facts = {"dims": dims + ".",
                 "where": f"From block {s['first_layer']} on; positions {positions}; tokens {tokens}."}
    else:
        facts = {"dims": "none detected (no |h| above both thresholds).", "where": "nowhere."}
    return Section("scan", "Massive-activation scan", "computed", body, facts, ["scan.json"])


def attention_section(ctx: ReportContext) -> Section:
    """circuitsvis patterns, pre-softmax logits, value norms and sink shares of the first sequence."""
    from mi_massive.pipelines.attention import attention_analysis
    from mi_massive.views.attention import attention_sections

    opts = {k: ctx.options[k] for k in ("abs_threshold", "rel_threshold") if k in ctx.options}
    source = ctx.text if ctx.text is not None and len(ctx.corpus.sequences[0]) <= ATTENTION_MAX_TOKENS else ctx.corpus
    result = attention_analysis(ctx.model, source, prepend_bos=ctx.corpus.prepend_bos,
                                max_tokens=None if isinstance(source, str) else ATTENTION_MAX_TOKENS, **opts)
    result.save(ctx.out / "attention.json")
    top = ", ".join(f"L{t['layer']}H{t['head']} {t['share']:.2f}" for t in result.top_sink_heads(5))
    fact = f"In the first sequence, heads paying most attention to {result.sink_label}: {top}."
    return Section("attention", "Attention sinks", "computed", attention_sections(result, id_prefix="report-attn"),
                   {"sinks": fact}, ["attention.json"])


# ------------------------------------------------------------------------------------------ optional
def _call(module: str, func: str, *args, **kwargs):
    """``module.func(*args, **kwargs)``; ImportError/AttributeError mean "not available here"."""
    return getattr(importlib.import_module(module), func)(*args, **kwargs)


def _compute_intervention(ctx: ReportContext):
    if len(ctx.corpus) < 2:
        raise MiMassiveError("needs a corpus of at least 2 sequences (evaluation + disjoint calibration)")
    ev, cal = _call("mi_massive.pipelines.intervene", "split_corpus", ctx.corpus, max(1, len(ctx.corpus) // 2))
    return _call("mi_massive.pipelines.intervene", "intervene", ctx.model, ev, cal, n_control=1, n_boot=1000,
                 options={"from": "mi-massive report"})


def _compute_simple(module: str, func: str) -> Callable[[ReportContext], Any]:
    def compute(ctx: ReportContext):
        return _call(module, func, ctx.model, ctx.corpus, options={"from": "mi-massive report"})
    return compute


@dataclass(frozen=True)
class Optional_:
    """An optional analysis: how to run it, its JSON file, how to load and show it.

    ``modules`` are searched for a ``report_record(model, corpus, scan)`` hook; ``compute`` is a
    direct adapter to the analysis' own function (tried when no hook exists); ``figures`` are
    ``(module, function)`` pairs of figure builders taking the record (guarded imports too).
    """

    id: str
    title: str
    modules: tuple[str, ...]
    filename: str
    command: str
    load: Callable[[Path], Any]
    view: Callable[[Any], tuple[str, dict[str, str]]]
    compute: Callable[[ReportContext], Any] | None = None
    figures: tuple[tuple[str, str], ...] = ()


def _record_loader(module: str, cls: str) -> Callable[[Path], Any]:
    """Load with the record class: its ``load`` classmethod when it returns an instance, else ``cls(**json)``."""
    def load(path: Path):
        klass = getattr(importlib.import_module(module), cls)
        loaded = klass.load(path) if hasattr(klass, "load") else None
        return loaded if isinstance(loaded, klass) else klass(**read_json(path))
    return load


def _view(name: str) -> Callable[[Any], tuple[str, dict[str, str]]]:
    def view(record):
        from mi_massive.views import report as views

        as_dict = record if isinstance(record, dict) else record.to_dict()
        if name == "generic":
            return views.generic_view(as_dict)
        if name == "intervention":
            return views.intervention_view(as_dict)
        return getattr(views, f"{name}_view")(record)
    return view


_MECH = "mi_massive.results.mechanism"
_CAUSAL = "mi_massive.results.causal"
_PLOTS = "mi_massive.views.mechanism_plots"

OPTIONAL = (
    Optional_("heads", "Head sink scores", ("mi_massive.pipelines.heads",), "heads.json", "mi-massive heads",
              _record_loader(_CAUSAL, "HeadScores"), _view("heads")),
    Optional_("attribution", "Who writes the massive entry (exact attribution)",
              ("mi_massive.pipelines.attribution", "mi_massive.pipelines.attribute"), "attribution.json",
              "mi-massive attribute", _record_loader(_CAUSAL, "AttributionResult"), _view("attribution")),
    Optional_("ablation", "Ablations with noise floors", ("mi_massive.pipelines.ablation", "mi_massive.pipelines.ablate"),
              "ablation.json", "mi-massive ablate", _record_loader(_CAUSAL, "AblationResult"), _view("ablation")),
    Optional_("intervention", "Interventions and perplexity", ("mi_massive.pipelines.intervene",), "intervene.json",
              "mi-massive intervene", _record_loader(_MECH, "InterventionResult"), _view("intervention"),
              _compute_intervention, ((_PLOTS, "ppl_figure"), (_PLOTS, "regeneration_figure"))),
    Optional_("mlp", "MLP internals", ("mi_massive.pipelines.mlp",), "mlp.json", "mi-massive mlp",
              _record_loader(_MECH, "MlpResult"), _view("generic"), _compute_simple("mi_massive.pipelines.mlp",
              "mlp_internals"), ((_PLOTS, "mlp_flow_figure"), (_PLOTS, "top_neurons_figure"))),
    Optional_("svd", "SVD of the MLP output projection", ("mi_massive.pipelines.svd",), "svd.json", "mi-massive svd",
              _record_loader(_MECH, "SvdResult"), _view("generic"), _compute_simple("mi_massive.pipelines.svd",
              "svd_analysis"), ((_PLOTS, "spectrum_figure"), (_PLOTS, "svd_regression_figure"))),
    Optional_("tokens", "Which tokens carry massive activations", ("mi_massive.pipelines.tokens",), "tokens.json",
              "mi-massive tokens", _record_loader(_MECH, "TokensResult"), _view("generic"),
              _compute_simple("mi_massive.pipelines.tokens", "tokens_analysis"), ((_PLOTS, "word_metric_figure"),)),
    Optional_("variants", "Mitigation variants", ("mi_massive.pipelines.variants",), "variants.json",
              "mi-massive compare-variants", read_json, _view("generic")),
)
OPTIONAL_IDS = tuple(s.id for s in OPTIONAL)


def _report_hook(spec: Optional_) -> Callable | None:
    """The analysis' ``report_record`` function when its module is importable (guarded import)."""
    for name in spec.modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        hook = getattr(module, REPORT_HOOK, None)
        if callable(hook):
            return hook
    return None


def _fingerprint_of(record: Any) -> str | None:
    prov = record.get("provenance") if isinstance(record, dict) else getattr(record, "provenance", None)
    return ((prov or {}).get("model") or {}).get("fingerprint")


def _run(ctx: ReportContext, spec: Optional_, section: Section) -> Any:
    """Compute now: the report hook, else the direct adapter. None when unavailable or not applicable."""
    hook = _report_hook(spec)
    try:
        if hook is not None:
            return hook(ctx.model, ctx.corpus, ctx.scan)
        if spec.compute is not None:
            return spec.compute(ctx)
    except (ImportError, AttributeError) as err:
        section.note = f"analysis code not available ({type(err).__name__}: {err})"
    except MiMassiveError as err:
        section.note = f"not applicable to this input: {err}"
    return None


def _load(ctx: ReportContext, spec: Optional_, section: Section) -> Any:
    """Load the JSON of an earlier command when it exists and was made with the same weights."""
    path = ctx.results_dir / spec.filename
    if not path.is_file():
        if not section.note:
            section.note = f"run {spec.command} --out {ctx.results_dir} first, or install the analysis"
        return None
    try:
        record = spec.load(path)
    except Exception as err:  # a file from another version: say so, keep the report
        section.note = f"{path.name} could not be read ({type(err).__name__}: {err})"
        return None
    found = _fingerprint_of(record)
    if found is not None and ctx.fingerprint is not None and found != ctx.fingerprint:
        section.note = f"{path.name} was made with other weights ({found}); ignored"
        return None
    section.status, section.files = "loaded", [spec.filename]
    section.note = f"loaded from {path} (written earlier by {spec.command})"
    return record


def _figures(spec: Optional_, record: Any) -> list[str]:
    from mi_massive.views.report import figure_fragment

    out = []
    for module, func in spec.figures:
        try:
            out.append(figure_fragment(_call(module, func, record)))
        except Exception:  # a missing or mismatched figure builder: the tables still show
            continue
    return out


def optional_section(ctx: ReportContext, spec: Optional_) -> Section:
    """Run it now, else load the JSON of an earlier command, else "not computed" (with the reason)."""
    section = Section(spec.id, spec.title)
    record = None
    if spec.id not in ctx.options.get("skip", ()):
        record = _run(ctx, spec, section)
    else:
        section.note = "skipped (--skip)"
    if record is not None:
        write_json(ctx.out / spec.filename, record)
        section.status, section.files, section.note = "computed", [spec.filename], ""
    else:
        record = _load(ctx, spec, section)
    if record is not None:
        try:
            body, section.facts = spec.view(record)
            section.body = "\n".join(_figures(spec, record) + [body])
        except Exception as err:  # a renderer/record mismatch must not lose the rest of the report
            section.body, section.facts = "", {}
            section.note = f"{section.note}; could not be shown ({type(err).__name__}: {err})".lstrip("; ")
    return section


def _optional(spec: Optional_) -> Callable[[ReportContext], Section]:
    def build(ctx: ReportContext) -> Section:
        return optional_section(ctx, spec)
    build.__name__ = f"{spec.id}_section"
    return build


SECTIONS: list[Callable[[ReportContext], Section]] = [scan_section, attention_section,
                                                      *[_optional(s) for s in OPTIONAL]]


# ------------------------------------------------------------------------------------------ driver
def build_report(
    model,
    data: str | Corpus,
    out: str | Path,
    *,
    prepend_bos: bool = False,
    results_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    sections: list[Callable[[ReportContext], Section]] | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Run every section on ``model`` and ``data`` (a text or a corpus); write ``out/report.html`` and JSON.

    ``results_dir`` (default ``out``) is where JSON files of earlier commands are looked up.
    Returns ``{"report": ..., "json": ..., <section files>}``.
    """
    out = prepare_out_dir(out)
    text = data if isinstance(data, str) else None
    corpus = text_corpus(model, data, prepend_bos=prepend_bos) if isinstance(data, str) else data
    ctx = ReportContext(model=model, corpus=corpus, out=out, results_dir=Path(results_dir) if results_dir else out,
                        text=text, options=dict(options or {}), progress=progress)
    built = [make(ctx) for make in (sections or SECTIONS)]
    from mi_massive.loading import model_info
    from mi_massive.results.io import package_versions
    from mi_massive.views.report import report_page

    info = model_info(model)
    header = {"model": info.name, "weights": info.fingerprint, "corpus": corpus.name,
              "sequences": len(corpus), "BOS": corpus.prepend_bos, "created (UTC)": utc_now()}
    summary = {q: " ".join(s.facts[q] for s in built if q in s.facts) or NOT_COMPUTED
               for q in ("dims", "where", "writers", "removal", "sinks")}
    record = {"provenance": {"model": info.to_dict(), "corpus": corpus.describe(), "options": dict(options or {}),
                             "versions": package_versions(), "created_utc": header["created (UTC)"]},
              "summary": summary, "sections": [s.to_dict() for s in built]}
    paths = {"json": write_json(out / "report.json", record)}
    for s in built:
        for name in s.files:
            if (out / name).is_file():
                paths[Path(name).stem] = out / name
    paths["report"] = atomic_write_text(out / "report.html", report_page(f"Massive activations: {info.name}", header, built))
    return paths
