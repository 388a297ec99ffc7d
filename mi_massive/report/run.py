"""The report pipeline: run what exists, collect what was computed before, write one offline page.

>>> [s.__name__ for s in SECTIONS][:4]
['scan_section', 'attention_section', 'heads_section', 'attribution_section']

The report is a list of sections; each is produced by a small function ``(ReportContext) -> Section``
(:data:`SECTIONS`). Scan and attention always run. The other analyses are optional:

1. every analysis of the registry (:data:`mi_massive.analyses.registry.ANALYSES`) with report hooks
   (:class:`mi_massive.core.analysis.ReportHooks`) is run now on the same model and corpus through
   its ``compute(model, corpus, scan)`` and its JSON is written (a MiMassiveError means "not
   applicable to this input");
2. otherwise, if ``<results dir>/<file>.json`` exists (written earlier by ``mi-massive heads`` /
   ``ablate`` / ``attribute`` / ``intervene`` / ``mlp`` / ``svd`` / ``tokens``) and was made with the
   same model weights (provenance fingerprint), it is loaded;
3. otherwise the section says "not computed" (and why), and so does the summary.

``options["skip"]`` lists section ids not to run (their earlier JSON is still loaded).

Every file is written atomically (temp file + rename), so re-running into the same directory
replaces ``report.html``/``report.json``/``scan.json``/``attention.json`` without a half-written state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mi_massive.core.corpus import Corpus, text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.io import atomic_write_text, prepare_out_dir, utc_now, write_json
from mi_massive.analyses.registry import ANALYSES
from mi_massive.core.analysis import Analysis
from mi_massive.core.html import figure_fragment
from mi_massive.report.page import NOT_COMPUTED, Section

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
        from mi_massive.core.loading import model_info

        return model_info(self.model).fingerprint


# ------------------------------------------------------------------------------------- always run
def scan_section(ctx: ReportContext) -> Section:
    """Scan of the corpus: layer-wise top-k/median, the 3-D view of one sentence, the massive entries."""
    from mi_massive.analyses.scan.run import SUN_SENTENCE, feature_view_layer, scan, sentence_activations
    from mi_massive.core import safe_html as sh
    from mi_massive.core.html import fmt, table_html
    from mi_massive.analyses.scan.figures import feature_3d_figure, layerwise_figure

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
        row = coords.setdefault((e.layer, e.position, e.dim), [e.layer, e.position, e.dim, {}, 0, 0.0])
        row[3][e.token] = row[3].get(e.token, 0) + 1
        row[4] += 1
        row[5] = max(row[5], abs(e.value))
    rows = sorted(coords.values(), key=lambda r: (r[0], -r[5]))
    rows = [[b, p, d, _tokens_text(t), n, fmt(v)] for b, p, d, t, n, v in rows]
    n_seq = len(ctx.corpus)
    layer_rows = [[r.label, fmt(r.top_values[0]), fmt(r.median), fmt(r.ratio), ", ".join(map(str, r.massive_dims)) or "-"]
                  for r in result.layers]
    body = "\n".join([
        f'<p class="text">Text: <code>{sh.text(ctx.text)}</code></p>' if ctx.text is not None else "",
        f"<p>{sh.text(n_seq)} sequence(s), {sh.text(sum(ctx.corpus.lengths))} tokens, BOS "
        f"{'prepended' if ctx.corpus.prepend_bos else 'not prepended'}; residual stream after every block "
        "(blocks.L.hook_resid_post). An <b>entry</b> is one value h[block][sequence, position, dim] whose |h| is above "
        "both thresholds (absolute, and relative to that block's median |h|).</p>",
        figure_fragment(layerwise_figure(result)),
        figure_fragment(feature_3d_figure(h, [sh.display_token(t) for t in toks], layer=layer, model_name=name))
        if layer is not None else "",
        "<h3>Massive entries (block, position, dim)</h3>",
        table_html(["block", "position", "dim", "token", f"sequences (of {n_seq})", "max |h|"], rows, source="scan.json")
        if rows else "<p>No massive activation (|h| above the absolute and relative thresholds) in any block.</p>",
        "<details><summary>every block: top-1 and median |h|</summary>"
        + table_html(["block", "top-1 |h| (mean)", "median |h| (mean)", "top-1 / median", "massive dims"], layer_rows,
                     max_rows=len(layer_rows) or 1, source="scan.json") + "</details>",
    ])
    s = result.summary
    if s["has_massive"]:
        dims = "; ".join(f"dim {d['dim']} (max |h| {fmt(d['max_abs'])}, blocks {d['layers'][0]}-{d['layers'][-1]})"
                         for d in s["dims"][:5])
        positions = ", ".join(f"{r['position']} ({r['count']} entries)" for r in s["positions"][:5])
        tokens = ", ".join(f"{sh.display_token(r['token'])!r} ({r['count']})" for r in s["tokens"][:5])
        first = s["first_layer"]
        first_text = (f"First massive block: {first} (of {len(result.block_layers)})" if first is not None
                      else "Only in the embeddings")
        facts = {"dims": dims + ".",
                 "where": f"{first_text}; positions {positions}; tokens {tokens} (an entry = one (block, sequence, "
                          "position, dim) value above both thresholds)."}
    else:
        facts = {"dims": "none detected (no |h| above both thresholds).", "where": "nowhere."}
    return Section("scan", "Massive-activation scan", "computed", body, facts, ["scan.json"])


def _tokens_text(counts: dict[str, int], limit: int = 3) -> str:
    """The tokens at one massive coordinate across sequences, most common first, quoted so spaces show.

    >>> _tokens_text({" of": 2, "n": 1, " the": 1, " and": 1})
    "' of' (2), 'n', ' the', … (4 tokens)"
    """
    from mi_massive.core import safe_html as sh

    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"'{sh.display_token(t)}'" + (f" ({c})" if c > 1 else "") for t, c in ranked[:limit])
    return text + (f", \u2026 ({len(ranked)} tokens)" if len(ranked) > limit else "")


def attention_section(ctx: ReportContext) -> Section:
    """circuitsvis patterns, pre-softmax logits, value norms and sink shares of the first sequence."""
    from mi_massive.analyses.attention.run import attention_analysis
    from mi_massive.analyses.attention.figures import attention_sections
    from mi_massive.core.html import fmt

    opts = {k: ctx.options[k] for k in ("abs_threshold", "rel_threshold") if k in ctx.options}
    source = ctx.text if ctx.text is not None and len(ctx.corpus.sequences[0]) <= ATTENTION_MAX_TOKENS else ctx.corpus
    result = attention_analysis(ctx.model, source, prepend_bos=ctx.corpus.prepend_bos,
                                max_tokens=None if isinstance(source, str) else ATTENTION_MAX_TOKENS, **opts)
    result.save(ctx.out / "attention.json")
    top = ", ".join(f"L{t['layer']}H{t['head']} {fmt(float(t['share']))}" for t in result.top_sink_heads(5))
    fact = f"In the first sequence, heads paying most attention to {result.sink_label}: {top}."
    return Section("attention", "Attention sinks", "computed", attention_sections(result, id_prefix="report-attn"),
                   {"sinks": fact}, ["attention.json"])


# ------------------------------------------------------------------------------------------ optional
def _fingerprint_of(record: Any) -> str | None:
    prov = record.get("provenance") if isinstance(record, dict) else getattr(record, "provenance", None)
    return ((prov or {}).get("model") or {}).get("fingerprint")


def _filename(analysis: Analysis) -> str:
    return analysis.report.filename or analysis.json_name


def _command(analysis: Analysis) -> str:
    return "mi-massive " + next(reversed(analysis.commands), analysis.name)


def _run(ctx: ReportContext, analysis: Analysis, section: Section) -> Any:
    """Compute now with the analysis' report hook. None when it has none or does not apply to this input."""
    if analysis.report.compute is None:
        return None
    try:
        return analysis.report.compute(ctx.model, ctx.corpus, ctx.scan)
    except MiMassiveError as err:
        section.note = f"not applicable to this input: {err}"
    return None


def _load(ctx: ReportContext, analysis: Analysis, section: Section) -> Any:
    """Load the JSON of an earlier command when it exists and was made with the same weights."""
    filename, command = _filename(analysis), _command(analysis)
    path = ctx.results_dir / filename
    if not path.is_file():
        if not section.note:
            section.note = f"run {command} --out {ctx.results_dir} first, or install the analysis"
        return None
    try:
        record = (analysis.report.load or analysis.record.load)(path)
    except Exception as err:  # a file from another version: say so, keep the report
        section.note = f"{path.name} could not be read ({type(err).__name__}: {err})"
        return None
    found = _fingerprint_of(record)
    if found is not None and ctx.fingerprint is not None and found != ctx.fingerprint:
        section.note = f"{path.name} was made with other weights ({found}); ignored"
        return None
    section.status, section.files = "loaded", [filename]
    section.note = f"loaded from {path} (written earlier by {command})"
    return record


def _figures(analysis: Analysis, record: Any) -> list[str]:
    if analysis.report.figures is None:
        return []
    try:
        return [figure_fragment(fig) for fig in analysis.report.figures(record)]
    except Exception:  # a figure that does not fit this record: the tables still show
        return []


def optional_section(ctx: ReportContext, analysis: Analysis) -> Section:
    """Run it now, else load the JSON of an earlier command, else "not computed" (with the reason)."""
    hooks = analysis.report
    section = Section(hooks.section, hooks.title)
    record = None
    if hooks.section not in ctx.options.get("skip", ()):
        record = _run(ctx, analysis, section)
    else:
        section.note = "skipped (--skip)"
    if record is not None:
        path = ctx.out / _filename(analysis)
        record.save(path) if hasattr(record, "save") else write_json(path, record)  # a Record keeps its JSON keys
        section.status, section.files, section.note = "computed", [_filename(analysis)], ""
    else:
        record = _load(ctx, analysis, section)
    if record is not None:
        try:
            body, section.facts = hooks.view(record)
            section.body = "\n".join(_figures(analysis, record) + [body])
        except Exception as err:  # a renderer/record mismatch must not lose the rest of the report
            section.body, section.facts = "", {}
            section.note = f"{section.note}; could not be shown ({type(err).__name__}: {err})".lstrip("; ")
    return section


def _optional(analysis: Analysis) -> Callable[[ReportContext], Section]:
    def build(ctx: ReportContext) -> Section:
        return optional_section(ctx, analysis)
    build.__name__ = f"{analysis.report.section}_section"
    return build


OPTIONAL = tuple(a for a in ANALYSES if a.report is not None)
OPTIONAL_IDS = tuple(a.report.section for a in OPTIONAL)
SECTIONS: list[Callable[[ReportContext], Section]] = [scan_section, attention_section, *[_optional(a) for a in OPTIONAL]]


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

    >>> import tempfile
    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> out = tempfile.mkdtemp()
    >>> paths = build_report(model, "The cat sat on the mat.", out, prepend_bos=True,
    ...                      sections=[scan_section, attention_section])
    >>> sorted(paths)
    ['attention', 'json', 'report', 'scan']
    >>> mm.core.io.read_json(paths["json"])["summary"]["dims"]
    'dim 5 (max |h| 3000, blocks 1-2).'

    ``data``: a text (one sequence, tokenised with ``prepend_bos``) or a
    :class:`~mi_massive.core.corpus.Corpus`. ``sections``: the section builders to run (default
    :data:`SECTIONS`: scan, attention, then every analysis of the registry with report hooks).
    ``results_dir`` (default ``out``) is where JSON files of earlier commands are looked up.
    ``options``: ``abs_threshold``/``rel_threshold`` (|h| thresholds, residual units / ratio to the
    median), ``batch_size``, ``skip`` (section ids not to compute). Returns ``{"report": ...,
    "json": ..., <section files>}`` (paths).
    """
    out = prepare_out_dir(out)
    text = data if isinstance(data, str) else None
    corpus = text_corpus(model, data, prepend_bos=prepend_bos) if isinstance(data, str) else data
    ctx = ReportContext(model=model, corpus=corpus, out=out, results_dir=Path(results_dir) if results_dir else out,
                        text=text, options=dict(options or {}), progress=progress)
    built = [make(ctx) for make in (sections or SECTIONS)]
    from mi_massive.core.loading import model_info
    from mi_massive.core.io import package_versions
    from mi_massive.report.page import report_page

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
