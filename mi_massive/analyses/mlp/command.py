"""``mi-massive mlp``: MLP internals and per-neuron contributions at the first massive layer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import DimOpt, FiguresOpt, Inputs, LayerOpt, command, echo_table, out_option, write_outputs



def print_mlp_summary(r) -> None:
    """Checkpoint table, the one-line decomposition verdict and the top neurons."""
    rows = [[c.label, f"{c.max:.4g}", f"{c.median:.4g}", f"{c.ratio:.0f}",
             f"{c.massive_token_max:.4g}" if c.massive_token_max is not None else "-",
             f"{c.ordinary_max:.4g}" if c.ordinary_max is not None else "-",
             ",".join(str(u.unit) for u in c.top_units[:3])] for c in r.checkpoints]
    echo_table(["checkpoint", "max |x|", "median", "max/median", "massive tok max", "ordinary max", "top units"], rows)
    c, chk = r.contributions, r.check
    typer.echo(f"block {r.layer}, dim {r.dim}: MLP writes {chk.massive_mlp_out_mean:.1f} of "
               f"{chk.massive_resid_post_mean:.1f} at the massive token(s) ({c.n_massive_tokens}); "
               f"{c.n_neurons_50} neuron(s) carry 50%, {c.n_neurons_90} carry 90% "
               f"(sum of neuron contributions reproduces hook_mlp_out to {chk.max_abs_error:.2g})")
    echo_table(["neuron", "contribution", "W_out[n,d]", "post (massive)", "post (ordinary max)"],
               [[t.neuron, f"{t.massive:.2f}", f"{t.w_out:.3f}", f"{t.post_massive:.3f}",
                 f"{t.post_ordinary_max_abs:.3f}" if t.post_ordinary_max_abs is not None else "-"]
                for t in c.top_neurons[:8]])
    for n in r.notes:
        typer.echo("note: " + n)


@command(batch_size=8)
def mlp_command(
    inputs: Inputs,
    layer: Optional[int] = LayerOpt, dim: Optional[int] = DimOpt,
    top_k: int = typer.Option(20, "--top-k", help="neurons listed"),
    figures: bool = FiguresOpt,
    out: Path = out_option("mlp.json and figures"),
) -> None:
    """MLP checkpoints (input, gate/up or pre, post, output) and per-neuron contributions to the massive dim."""
    from mi_massive.analyses.mlp import figures as figs
    from mi_massive.analyses.mlp.run import mlp
    from mi_massive.core.io import prepare_out_dir

    inputs.check(top_k=top_k)
    out = prepare_out_dir(out)
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    r = mlp(bridge, data, layer=layer, dim=dim, top_k=top_k, batch_size=inputs.batch_size,
            options={"dtype": inputs.dtype})
    print_mlp_summary(r)
    write_outputs(out, "mlp.json", r, {k: (lambda f=f: f) for k, f in figs.figures(r).items()} if figures else None)
