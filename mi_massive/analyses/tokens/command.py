"""``mi-massive tokens``: which tokens carry massive activations; function vs content words."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import FiguresOpt, Inputs, LayerOpt, command, echo_table, out_option, write_outputs


def print_tokens_summary(r) -> None:
    """Token classes, the most frequent massive tokens and the conclusion sentences."""
    echo_table(["class", "tokens", "massive", "rate", "95% CI"],
               [[c.class_, c.n_tokens, c.n_massive, f"{c.rate:.4f}" if c.rate is not None else "-",
                 f"[{c.rate_ci95[0]:.4f}, {c.rate_ci95[1]:.4f}]"] for c in r.classes])
    echo_table(["massive token", "massive (any layer)", "in corpus"],
               [[repr(t.token), t.n_massive, t.n_in_corpus] for t in r.top_tokens[:10]])
    for line in r.conclusion:
        typer.echo(line)


@command(batch_size=8)
def tokens_command(
    inputs: Inputs,
    layer: Optional[int] = LayerOpt,
    occurrences: int = typer.Option(8, "--occurrences", help="occurrences used per word type (types with fewer are dropped)"),
    k: int = typer.Option(100, "--k", help="SVD components for the left/right projections"),
    n_boot: int = typer.Option(2000, "--n-boot", help="bootstrap resamples for effect-size CIs"),
    figures: bool = FiguresOpt,
    out: Path = out_option("tokens.json and figures"),
) -> None:
    """Massive tokens by class (start / delimiter / other) and the four function-vs-content word metrics."""
    from mi_massive.analyses.tokens import figures as figs
    from mi_massive.analyses.tokens.run import tokens
    from mi_massive.core.io import prepare_out_dir

    inputs.check(k=k, n_boot=n_boot)
    out = prepare_out_dir(out)
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    r = tokens(bridge, data, layer=layer, occurrences=occurrences, k=k, n_boot=n_boot, seed=inputs.seed,
               batch_size=inputs.batch_size, options={"dtype": inputs.dtype})
    print_tokens_summary(r)
    write_outputs(out, "tokens.json", r, {k_: (lambda f=f: f) for k_, f in figs.figures(r).items()} if figures else None)
