"""``mi-massive attention``: offline attention-sink page (circuitsvis patterns + companion views) for one text."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import Inputs, command, echo_table, out_option, parse_index_list
from mi_massive.errors import MiMassiveError


@command(corpus=False, batch_size=False)
def attention_command(
    inputs: Inputs,
    text: str = typer.Option(..., "--text", help="the text whose attention is shown (token strings are escaped)"),
    layers: Optional[str] = typer.Option(None, "--layers", help="blocks to show, e.g. 11 or 5,11 or 10-12 "
                                         "(default: first massive block, the next one and the last)"),
    heads: Optional[str] = typer.Option(None, "--heads", help="heads to show, e.g. 0,3 or 0-4 (default: all)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="truncate the text to this many tokens"),
    out: Path = out_option("attention.html, attention.json"),
) -> None:
    """Write OUT/attention.html: circuitsvis head patterns, attention logits, value norms, sink shares (offline)."""
    from mi_massive.analyses.attention.run import attention, write_attention

    if not text.strip():
        raise MiMassiveError("--text is empty or only whitespace")
    layer_list, head_list = parse_index_list(layers, "--layers"), parse_index_list(heads, "--heads")
    if max_tokens is not None and max_tokens < 2:
        raise MiMassiveError(f"--max-tokens must be at least 2, got {max_tokens}")
    inputs.check()
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    bridge = inputs.load()
    result = attention(bridge, text, layers=layer_list, heads=head_list, prepend_bos=inputs.prepend_bos,
                       prepend_bos_source=inputs.prepend_bos_source, max_tokens=max_tokens)
    written = write_attention(result, out)  # the page holds the figures of figures(result) and the patterns
    typer.echo(result.describe())
    echo_table(["block", "head", "share of attention to sinks"],
               [[t["layer"], t["head"], f"{t['share']:.3f}"] for t in result.top_sink_heads(5)])
    typer.echo("wrote " + ", ".join(str(p) for p in written))
