"""``mi-massive mlp``: MLP internals and per-neuron contributions at the first massive layer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import echo_table, user_errors
from mi_massive.core.cli import (write_outputs, BatchOpt, BosOpt, CorpusOpt, DtypeOpt, ModelOpt, NSamplesOpt, SeedOpt, SeqLenOpt,
                                   TextOpt, load, make_corpus, validate_inputs)
from mi_massive.core.io import prepare_out_dir

LayerOpt = typer.Option(None, "--layer", help="block index (0-based); default: the first massive layer (needs a scan)")
DimOpt = typer.Option(None, "--dim", help="residual dim; default: the largest |block output| dim at that layer")


def print_mlp_summary(r) -> None:
    rows = [[c["label"], f"{c['max']:.4g}", f"{c['median']:.4g}", f"{c['ratio']:.0f}",
             f"{c['massive_token_max']:.4g}" if c["massive_token_max"] is not None else "-",
             f"{c['ordinary_max']:.4g}" if c["ordinary_max"] is not None else "-",
             ",".join(str(u["unit"]) for u in c["top_units"][:3])] for c in r.checkpoints]
    echo_table(["checkpoint", "max |x|", "median", "max/median", "massive tok max", "ordinary max", "top units"], rows)
    c = r.contributions
    typer.echo(f"block {r.layer}, dim {r.dim}: MLP writes {r.check['massive_mlp_out_mean']:.1f} of "
               f"{r.check['massive_resid_post_mean']:.1f} at the massive token(s) ({c['n_massive_tokens']}); "
               f"{c['n_neurons_50']} neuron(s) carry 50%, {c['n_neurons_90']} carry 90% "
               f"(sum of neuron contributions reproduces hook_mlp_out to {r.check['max_abs_error']:.2g})")
    echo_table(["neuron", "contribution", "W_out[n,d]", "post (massive)", "post (ordinary max)"],
               [[t["neuron"], f"{t['massive']:.2f}", f"{t['w_out']:.3f}", f"{t['post_massive']:.3f}",
                 f"{t['post_ordinary_max_abs']:.3f}" if t["post_ordinary_max_abs"] is not None else "-"]
                for t in c["top_neurons"][:8]])
    for n in r.notes:
        typer.echo("note: " + n)


@user_errors
def mlp_command(
    model: str = ModelOpt, text: Optional[str] = TextOpt, corpus: Optional[str] = CorpusOpt,
    n_samples: int = NSamplesOpt, seq_len: int = SeqLenOpt, seed: int = SeedOpt, prepend_bos: bool = BosOpt,
    layer: Optional[int] = LayerOpt, dim: Optional[int] = DimOpt,
    top_k: int = typer.Option(20, "--top-k", help="neurons listed"),
    dtype: str = DtypeOpt, batch_size: int = BatchOpt, figures: bool = typer.Option(True, "--figures/--no-figures"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (mlp.json and figures)"),
) -> None:
    """MLP checkpoints (input, gate/up or pre, post, output) and per-neuron contributions to the massive dim."""
    from mi_massive.analyses.mlp.run import mlp_internals

    validate_inputs(model, text, corpus, n_samples=n_samples, seq_len=seq_len, top_k=top_k, batch_size=batch_size)
    out = prepare_out_dir(out)
    bridge = load(model, dtype)
    data = make_corpus(bridge, text, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)
    r = mlp_internals(bridge, data, layer=layer, dim=dim, top_k=top_k, batch_size=batch_size, options={"dtype": dtype})
    print_mlp_summary(r)
    from mi_massive.analyses.mlp.figures import mlp_flow_figure, top_neurons_figure

    write_outputs(out, "mlp.json", r, {"mlp_flow": lambda: mlp_flow_figure(r),
                                       "mlp_top_neurons": lambda: top_neurons_figure(r)} if figures else None)
