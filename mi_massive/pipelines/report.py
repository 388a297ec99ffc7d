"""The report pipeline: run what exists, collect what was computed before, write one offline page.

The report is a list of sections; each is produced by a small function ``(ReportContext) -> Section``
(:data:`SECTIONS`). Scan and attention always run. The other analyses are optional:

1. if the analysis module is importable and defines ``report_record(model, corpus, scan)`` (the
   report hook: returns the analysis' result record), it is run now and its JSON is written;
2. otherwise, if ``<results dir>/<file>.json`` exists (written earlier by ``mi-massive heads`` /
   ``ablate`` / ``attribute`` / ``intervene`` / ``mlp`` / ``svd`` / ``tokens``) and was made with the
   same model weights (provenance fingerprint), it is loaded;
3. otherwise the section says "not computed" (and why), and so does the summary.

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
@dataclass(frozen=True)
class Optional_:
    """An optional analysis: where its code would be, its JSON file, how to load and show it."""

    id: str
    title: str
    modules: tuple[str, ...]
    filename: str
    command: str
    load: Callable[[Path], Any]
    view: Callable[[Any], tuple[str, dict[str, str]]]


def _record_loader(module: str, cls: str) -> Callable[[Path], Any]:
    def load(path: Path):
        return getattr(importlib.import_module(module), cls).load(path)
    return load


def _dict_loader(path: Path) -> dict[str, Any]:
    return read_json(path)


def _view(name: str) -> Callable[[Any], tuple[str, dict[str, str]]]:
    def view(record):
        from mi_massive.views import report as views

        if name == "generic":
            return views.generic_view(record if isinstance(record, dict) else record.to_dict())
        if name == "intervention":
            return views.intervention_view(record if isinstance(record, dict) else record.to_dict())
        return getattr(views, f"{name}_view")(record)
    return view


OPTIONAL = (
    Optional_("heads", "Head sink scores", ("mi_massive.pipelines.heads",), "heads.json", "mi-massive heads",
              _record_loader("mi_massive.results.causal", "HeadScores"), _view("heads")),
    Optional_("attribution", "Who writes the massive entry (exact attribution)", ("mi_massive.pipelines.attribution",
              "mi_massive.pipelines.attribute"), "attribution.json", "mi-massive attribute",
              _record_loader("mi_massive.results.causal", "AttributionResult"), _view("attribution")),
    Optional_("ablation", "Ablations with noise floors", ("mi_massive.pipelines.ablation", "mi_massive.pipelines.ablate"),
              "ablation.json", "mi-massive ablate", _record_loader("mi_massive.results.causal", "AblationResult"),
              _view("ablation")),
    Optional_("intervention", "Interventions and perplexity", ("mi_massive.pipelines.intervention",
              "mi_massive.pipelines.intervene"), "intervene.json", "mi-massive intervene", _dict_loader,
              _view("intervention")),
    Optional_("mlp", "MLP internals", ("mi_massive.pipelines.mlp",), "mlp.json", "mi-massive mlp", _dict_loader,
              _view("generic")),
    Optional_("svd", "SVD of the MLP output projection", ("mi_massive.pipelines.svd",), "svd.json", "mi-massive svd",
              _dict_loader, _view("generic")),
    Optional_("tokens", "Which tokens carry massive activations", ("mi_massive.pipelines.tokens",), "tokens.json",
              "mi-massive tokens", _dict_loader, _view("generic")),
    Optional_("variants", "Mitigation variants", ("mi_massive.pipelines.variants",), "variants.json",
              "mi-massive compare-variants", _dict_loader, _view("generic")),
)


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


def optional_section(ctx: ReportContext, spec: Optional_) -> Section:
    """Run (report hook), else load (JSON of an earlier command), else "not computed"."""
    section = Section(spec.id, spec.title)
    record = None
    hook = _report_hook(spec)
    if hook is not None:
        try:
            record = hook(ctx.model, ctx.corpus, ctx.scan)
        except MiMassiveError as err:
            section.note = f"{spec.command} could not run on this input: {err}"
        if record is not None:
            path = ctx.out / spec.filename
            write_json(path, record)
            section.status, section.files = "computed", [spec.filename]
    if record is None:
        path = ctx.results_dir / spec.filename
        if path.is_file():
            try:
                record = spec.load(path)
            except Exception as err:  # a file from another version: say so, keep the report
                section.note = f"{path.name} could not be read ({type(err).__name__}: {err})"
            else:
                found = _fingerprint_of(record)
                if found is not None and ctx.fingerprint is not None and found != ctx.fingerprint:
                    section.note = f"{path.name} was made with other weights ({found}); ignored"
                    record = None
                else:
                    section.status, section.files = "loaded", [spec.filename]
                    section.note = f"loaded from {path} (run earlier with {spec.command})"
        elif not section.note:
            section.note = f"run {spec.command} --out {ctx.results_dir} first, or install the analysis"
    if record is not None:
        try:
            section.body, section.facts = spec.view(record)
        except Exception as err:  # a renderer/record mismatch must not lose the rest of the report
            section.body = ""
            section.note = f"{section.note}; could not be shown ({type(err).__name__}: {err})"
            section.facts = {}
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
    summary = {q: next((s.facts[q] for s in built if q in s.facts), NOT_COMPUTED)
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
