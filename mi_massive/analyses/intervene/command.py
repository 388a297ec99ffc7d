"""``mi-massive intervene``: Sun/Owen interventions on massive activations, scored by perplexity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import FiguresOpt, Inputs, SeedOpt, check_positive, command, echo_table, out_option, write_outputs
from mi_massive.errors import MiMassiveError


def print_intervention_table(result) -> None:
    """The Table-3-style perplexity table and the regeneration verdict."""
    rows = []
    for r in result.table:
        lo, hi = r.ci95
        rlo, rhi = r.ratio_ci95
        rows.append([r.condition, f"{r.ppl:.3f}", f"[{lo:.3f}, {hi:.3f}]", f"{r.ratio:.4g}", f"[{rlo:.4g}, {rhi:.4g}]"])
    echo_table(["condition", "PPL", "95% CI (chunks)", "x original", "95% CI (paired)"], rows)
    ev = result.evaluation
    edited = ", ".join(f"dim {t.dim} at block {t.layer} ({t.n_positions} positions)" for t in result.targets)
    typer.echo(f"edited: {edited}")
    typer.echo(f"first massive layer {result.first_layer}, dims {result.dims}; 'every layer' = blocks "
               f"{result.edited_layers_all[0]}..{result.edited_layers_all[-1]}; "
               f"{ev.n_massive_positions} massive positions in {ev.n_chunks} chunks "
               f"({ev.n_start_positions} at position 0)")
    for run in result.runs:
        if run.name == "zero (one layer)":
            for cls, prof in run.regeneration.items():
                clean = result.run("original").regeneration[cls].post[-1]
                typer.echo(f"regeneration after zeroing at layer {result.first_layer} ({cls}): last block |h| = "
                           f"{prof.post[-1]:.1f} (clean {clean:.1f})")


@command(corpus=False, batch_size=4)
def intervene_command(
    inputs: Inputs,
    corpus: str = typer.Option("wikitext-2", "--corpus", help="evaluation text: 'wikitext-2[:test]', 'builtin' or a file"),
    calib_corpus: str = typer.Option("split", "--calib-corpus",
                                     help="'split' (disjoint windows of the evaluation text) or another corpus"),
    n_samples: int = typer.Option(16, "--n-samples", help="evaluation chunks"),
    n_calib: int = typer.Option(16, "--n-calib", help="calibration chunks"),
    seq_len: int = typer.Option(256, "--seq-len", help="tokens per chunk (including BOS)"),
    seed: int = SeedOpt,
    layer: Optional[int] = typer.Option(None, "--layer", help="intervene here (on the dims massive there) instead "
                                        "of the targets below"),
    targets: str = typer.Option("each", "--targets", help="each (every massive dim at its own first massive layer) "
                                "or earliest (only the first massive layer and its dims)"),
    n_control: int = typer.Option(3, "--n-control", help="random ordinary-dim controls (seeds)"),
    variants: str = typer.Option("one,every", "--variants", help="'one', 'every' or 'one,every'"),
    figures: bool = FiguresOpt,
    out: Path = out_option("intervene.json and figures"),
) -> None:
    """Zero / mean / control interventions on every massive dim at its own first massive layer (and every
    layer); PPL with CIs."""
    from mi_massive.analyses.intervene import figures as figs
    from mi_massive.analyses.intervene.run import intervene, split_corpus
    from mi_massive.core.corpus import load_corpus
    from mi_massive.core.io import prepare_out_dir

    check_positive(n_samples=n_samples, n_calib=n_calib, seq_len=seq_len)
    inputs.check()
    if n_control < 0:
        raise MiMassiveError("--n-control must be >= 0")
    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    if not chosen or any(v not in ("one", "every") for v in chosen):
        raise MiMassiveError(f"--variants must list 'one' and/or 'every', got '{variants}'")
    if targets not in ("each", "earliest"):
        raise MiMassiveError(f"--targets must be 'each' or 'earliest', got '{targets}'")
    out = prepare_out_dir(out)
    bridge = inputs.load()
    kw = dict(seq_len=seq_len, seed=seed, prepend_bos=inputs.prepend_bos, prepend_bos_source=inputs.prepend_bos_source)
    if calib_corpus == "split":
        eval_c, cal_c = split_corpus(load_corpus(bridge, corpus, n_samples=n_samples + n_calib, **kw), n_samples)
    else:
        eval_c = load_corpus(bridge, corpus, n_samples=n_samples, **kw)
        cal_c = load_corpus(bridge, calib_corpus, n_samples=n_calib, **kw)
    result = intervene(bridge, eval_c, cal_c, layer=layer, n_control=n_control, seed=seed, variants=chosen,
                       targets=targets, batch_size=inputs.batch_size,
                       options={"dtype": inputs.dtype, "corpus": corpus, "calib_corpus": calib_corpus})
    print_intervention_table(result)
    write_outputs(out, "intervene.json", result,
                  {k: (lambda f=f: f) for k, f in figs.figures(result).items()} if figures else None)
