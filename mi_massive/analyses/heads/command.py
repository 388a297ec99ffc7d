"""``mi-massive heads``: attention sink scores of every head (to position 0 and to massive positions)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import echo_table, user_errors
from mi_massive.core.cli import (write_outputs, BatchOpt, BosOpt, CorpusOpt, DtypeOpt, ModelOpt, NSamplesOpt, SeedOpt,
                                   SeqLenOpt, TextOpt, load, make_corpus, validate_inputs)


def _fmt(v):
    return "-" if v is None else f"{v:.3f}"


@user_errors
def heads_command(
    model: str = ModelOpt, text: Optional[str] = TextOpt, corpus: Optional[str] = CorpusOpt,
    n_samples: int = NSamplesOpt, seq_len: int = SeqLenOpt, seed: int = SeedOpt, prepend_bos: bool = BosOpt,
    dtype: str = DtypeOpt, batch_size: int = BatchOpt,
    top_k: int = typer.Option(5, "--top-k", help="show the k highest and k lowest heads"),
    by: str = typer.Option("first", "--by", help="rank by 'first' (position 0) or 'massive' (scan positions)"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (heads.json and heatmaps)"),
) -> None:
    """Per-head mean attention from queries q >= 1 to position 0 and to the massive positions (95% CI)."""
    from mi_massive.errors import MiMassiveError
    from mi_massive.analyses.heads.run import head_scores
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.analyses.heads.figures import head_heatmap

    validate_inputs(model, text, corpus, n_samples=n_samples, seq_len=seq_len, batch_size=batch_size, top_k=top_k)
    if by not in ("first", "massive"):
        raise MiMassiveError(f"unknown --by '{by}'; use first or massive")
    bridge = load(model, dtype)
    data = make_corpus(bridge, text, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)
    res = head_scores(bridge, data, batch_size=batch_size, options={"prepend_bos": prepend_bos, "dtype": dtype})
    out = prepare_out_dir(out)
    ranked = [h for h in res.ranking(by) if (h.to_first if by == "first" else h.to_massive) is not None]
    rows = [[f"L{h.layer}H{h.head}", _fmt(h.to_first), f"[{_fmt(h.to_first_ci95[0])}, {_fmt(h.to_first_ci95[1])}]",
             _fmt(h.to_massive)] for h in ranked[:top_k] + ranked[-top_k:]]
    echo_table(["head", "to pos 0", "95% CI", "to massive"], rows)
    figs = {"heads_first": lambda: head_heatmap(res, "first")}
    if any(h.to_massive is not None for h in res.heads):
        figs["heads_massive"] = lambda: head_heatmap(res, "massive")
    write_outputs(out, "heads.json", res, figs)
