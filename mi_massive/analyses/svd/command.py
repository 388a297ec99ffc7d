"""``mi-massive svd``: singular spectrum of W_out at the first massive layer and alignment with u_1."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import user_errors
from mi_massive.core.cli import (write_outputs, BatchOpt, BosOpt, CorpusOpt, DtypeOpt, ModelOpt, NSamplesOpt, SeedOpt, SeqLenOpt,
                                   TextOpt, load, make_corpus, validate_inputs)
from mi_massive.analyses.mlp.command import DimOpt, LayerOpt
from mi_massive.core.io import prepare_out_dir


@user_errors
def svd_command(
    model: str = ModelOpt, text: Optional[str] = TextOpt, corpus: Optional[str] = CorpusOpt,
    n_samples: int = NSamplesOpt, seq_len: int = SeqLenOpt, seed: int = SeedOpt, prepend_bos: bool = BosOpt,
    layer: Optional[int] = LayerOpt, dim: Optional[int] = DimOpt,
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the R^2 CI"),
    dtype: str = DtypeOpt, batch_size: int = BatchOpt, figures: bool = typer.Option(True, "--figures/--no-figures"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (svd.json and figures)"),
) -> None:
    """SVD of W_out (sign-fixed for the massive dim), sigma ratios, V^T[0, d], and regressions on h . u_1."""
    from mi_massive.analyses.svd.run import svd_analysis

    validate_inputs(model, text, corpus, n_samples=n_samples, seq_len=seq_len, n_boot=n_boot, batch_size=batch_size)
    out = prepare_out_dir(out)
    bridge = load(model, dtype)
    data = make_corpus(bridge, text, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)
    r = svd_analysis(bridge, data, layer=layer, dim=dim, n_boot=n_boot, seed=seed, batch_size=batch_size,
                     options={"dtype": dtype})
    s = r.spectrum
    typer.echo(f"block {r.layer} W_out, dim {r.dim}: sigma1 {s['sigma1']:.3f}, sigma2 {s['sigma2']:.3f} "
               f"(ratio {s['sigma_ratio']:.2f}); sigma1^2 share {100 * s['sigma1_sq_share']:.2f}%; "
               f"V^T[0, {r.dim}] = {s['vt0_dim']:.4f} (rank {s['vt0_dim_rank']} in |V^T[0]|)")
    for cls in ("start", "other"):
        if cls in r.alignment:
            a = r.alignment[cls]
            typer.echo(f"{cls}: n {a['n']}, mean cos(h, u1) {a['cos_mean']:.4f}, mean h.u1 {a['proj_mean']:.3f}")
    for n in r.notes:
        typer.echo("note: " + n)
    from mi_massive.analyses.svd.figures import spectrum_figure, svd_regression_figure

    write_outputs(out, "svd.json", r, {"svd_spectrum": lambda: spectrum_figure(r),
                                       "svd_regression": lambda: svd_regression_figure(r)} if figures else None)
