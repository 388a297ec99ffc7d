"""``mi-massive tokens``: which tokens carry massive activations; function vs content words."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import echo_table, user_errors
from mi_massive.core.cli import (write_outputs, BatchOpt, BosOpt, CorpusOpt, DtypeOpt, ModelOpt, NSamplesOpt, SeedOpt, SeqLenOpt,
                                   TextOpt, load, make_corpus, validate_inputs)
from mi_massive.analyses.mlp.command import LayerOpt
from mi_massive.core.io import prepare_out_dir


@user_errors
def tokens_command(
    model: str = ModelOpt, text: Optional[str] = TextOpt, corpus: Optional[str] = CorpusOpt,
    n_samples: int = NSamplesOpt, seq_len: int = SeqLenOpt, seed: int = SeedOpt, prepend_bos: bool = BosOpt,
    layer: Optional[int] = LayerOpt,
    occurrences: int = typer.Option(8, "--occurrences", help="occurrences used per word type (types with fewer are dropped)"),
    k: int = typer.Option(100, "--k", help="SVD components for the left/right projections"),
    n_boot: int = typer.Option(2000, "--n-boot", help="bootstrap resamples for effect-size CIs"),
    dtype: str = DtypeOpt, batch_size: int = BatchOpt, figures: bool = typer.Option(True, "--figures/--no-figures"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (tokens.json and figures)"),
) -> None:
    """Massive tokens by class (start / delimiter / other) and the four function-vs-content word metrics."""
    from mi_massive.analyses.tokens.run import tokens_analysis

    validate_inputs(model, text, corpus, n_samples=n_samples, seq_len=seq_len, k=k, n_boot=n_boot,
                    batch_size=batch_size)
    out = prepare_out_dir(out)
    bridge = load(model, dtype)
    data = make_corpus(bridge, text, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)
    r = tokens_analysis(bridge, data, layer=layer, occurrences=occurrences, k=k, n_boot=n_boot, seed=seed,
                        batch_size=batch_size, options={"dtype": dtype})
    echo_table(["class", "tokens", "massive", "rate", "95% CI"],
               [[c["class"], c["n_tokens"], c["n_massive"], f"{c['rate']:.4f}" if c["rate"] is not None else "-",
                 f"[{c['rate_ci95'][0]:.4f}, {c['rate_ci95'][1]:.4f}]"] for c in r.classes])
    echo_table(["massive token", "massive (any layer)", "in corpus"],
               [[repr(t["token"]), t["n_massive"], t["n_in_corpus"]] for t in r.top_tokens[:10]])
    for line in r.conclusion:
        typer.echo(line)
    from mi_massive.analyses.tokens.figures import word_metric_figure

    write_outputs(out, "tokens.json", r, {"tokens_words": lambda: word_metric_figure(r)} if figures else None)
