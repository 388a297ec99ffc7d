"""``mi-massive svd``: singular spectrum of W_out at the first massive layer and alignment with u_1."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import DimOpt, FiguresOpt, Inputs, LayerOpt, command, out_option, write_outputs


def print_svd_summary(r) -> None:
    """Spectrum line, per-class alignment with u_1 and the notes (regression verdicts)."""
    s = r.spectrum
    typer.echo(f"block {r.layer} W_out, dim {r.dim}: sigma1 {s.sigma1:.3f}, sigma2 {s.sigma2:.3f} "
               f"(ratio {s.sigma_ratio:.2f}); sigma1^2 share {100 * s.sigma1_sq_share:.2f}%; "
               f"V^T[0, {r.dim}] = {s.vt0_dim:.4f} (rank {s.vt0_dim_rank} in |V^T[0]|)")
    for cls, a in r.alignment.by_class().items():
        typer.echo(f"{cls}: n {a.n}, mean cos(h, u1) {a.cos_mean:.4f}, mean h.u1 {a.proj_mean:.3f}")
    for n in r.notes:
        typer.echo("note: " + n)


@command(batch_size=8)
def svd_command(
    inputs: Inputs,
    layer: Optional[int] = LayerOpt, dim: Optional[int] = DimOpt,
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the R^2 CI"),
    figures: bool = FiguresOpt,
    out: Path = out_option("svd.json and figures"),
) -> None:
    """SVD of W_out (sign-fixed for the massive dim), sigma ratios, V^T[0, d], and regressions on h . u_1."""
    from mi_massive.analyses.svd import figures as figs
    from mi_massive.analyses.svd.run import svd
    from mi_massive.core.io import prepare_out_dir

    inputs.check(n_boot=n_boot)
    out = prepare_out_dir(out)
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    r = svd(bridge, data, layer=layer, dim=dim, n_boot=n_boot, seed=inputs.seed, batch_size=inputs.batch_size,
            options={"dtype": inputs.dtype})
    print_svd_summary(r)
    write_outputs(out, "svd.json", r, {k: (lambda f=f: f) for k, f in figs.figures(r).items()} if figures else None)
