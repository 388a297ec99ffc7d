"""``mi-massive heads``: attention sink scores of every head (to position 0 and to massive positions)."""

from __future__ import annotations

from pathlib import Path

import typer

from mi_massive.core.cli import Inputs, ci_text, command, echo_table, out_option, write_outputs


def _fmt(v):
    return "-" if v is None else f"{v:.3f}"


@command(batch_size=8)
def heads_command(
    inputs: Inputs,
    top_k: int = typer.Option(5, "--top-k", help="show the k highest and k lowest heads"),
    by: str = typer.Option("first", "--by", help="rank by 'first' (position 0) or 'massive' (scan positions)"),
    out: Path = out_option("heads.json and heatmaps"),
) -> None:
    """Per-head mean attention from queries q >= 1 to position 0 and to the massive positions (95% CI)."""
    from mi_massive.analyses.heads.figures import figures
    from mi_massive.analyses.heads.run import heads
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.errors import MiMassiveError

    inputs.check(top_k=top_k)
    if by not in ("first", "massive"):
        raise MiMassiveError(f"unknown --by '{by}'; use first or massive")
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    res = heads(bridge, data, batch_size=inputs.batch_size,
                options={"prepend_bos": inputs.prepend_bos, "dtype": inputs.dtype})
    out = prepare_out_dir(out)
    ranked = [h for h in res.ranking(by) if (h.to_first if by == "first" else h.to_massive) is not None]

    def row(h):
        return [f"L{h.layer}H{h.head}", _fmt(h.to_first), ci_text(*(h.to_first_ci95 or (None, None)), len(data),
                                                                 fmt="{:.3f}"), _fmt(h.to_massive)]

    header = ["head", "to pos 0", "95% CI", "to massive"]
    top, bottom = ranked[:top_k], ranked[max(top_k, len(ranked) - top_k):]  # never a head in both tables
    what = "position 0" if by == "first" else "the massive positions"
    typer.echo(f"highest {len(top)} heads (of {len(ranked)}) by attention to {what} "
               f"(queries q >= {res.min_query}; {len(data)} sequence(s)):")
    echo_table(header, [row(h) for h in top])
    typer.echo("")
    if bottom:
        typer.echo(f"lowest {len(bottom)} heads:")
        echo_table(header, [row(h) for h in bottom])
    else:
        typer.echo(f"(no lowest-heads table: all {len(ranked)} heads are listed above)")
    write_outputs(out, "heads.json", res, {stem: (lambda fig=fig: fig) for stem, fig in figures(res).items()})
    from mi_massive.core.loading.vit import is_vision

    if is_vision(bridge) and bridge.cfg.n_registers:  # a ViT with registers: the share each head pays them
        from mi_massive.analyses.heads.run import vision_heads

        reg = vision_heads(bridge, data, batch_size=inputs.batch_size, groups=("registers",),
                           options={"prepend_bos": False, "dtype": inputs.dtype})["registers"]
        top = sorted((h for h in reg.heads if h.to_massive is not None), key=lambda h: -h.to_massive)[:top_k]
        typer.echo(f"highest {len(top)} heads by attention to the {bridge.cfg.n_registers} register tokens:")
        echo_table(["head", "to registers", "to CLS"], [[f"L{h.layer}H{h.head}", _fmt(h.to_massive), _fmt(h.to_first)]
                                                      for h in top])
        write_outputs(out, "heads_registers.json", reg)
