"""``mi-massive patch``: activation patching clean -> corrupted over layers x positions and heads."""

from __future__ import annotations

from pathlib import Path

import typer

from mi_massive.core.cli import Inputs, command, out_option, write_outputs


@command(corpus=False, batch_size=False)
def patch_command(
    inputs: Inputs,
    clean: str = typer.Option(..., "--clean", help="clean prompt"),
    corrupted: str = typer.Option(..., "--corrupted", help="corrupted prompt (same number of tokens)"),
    metric: str = typer.Option("loss", "--metric", help="entry:L:P:D (residual entry), logit_diff:A:B (A, B: token "
                               "ids, or quoted single tokens such as logit_diff:\" Paris\":\" Rome\") or loss"),
    components: str = typer.Option("resid_pre,attn_out,mlp_out,head", "--components"),
    backend: str = typer.Option("auto", "--backend", help="auto, native or transformer_lens"),
    out: Path = out_option("patching.json and figures"),
) -> None:
    """Patch each activation of the clean run into the corrupted run and record the metric."""
    from mi_massive.analyses.patch.figures import figures
    from mi_massive.analyses.patch.run import COMPONENTS, parse_metric, patch
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.errors import MiMassiveError

    comps = [c.strip() for c in components.split(",") if c.strip()]
    bad = [c for c in comps if c not in COMPONENTS]
    if bad or not comps:
        raise MiMassiveError(f"unknown component '{bad[0] if bad else ''}'; choose from {', '.join(COMPONENTS)}")
    if backend not in ("auto", "native", "transformer_lens"):
        raise MiMassiveError(f"unknown backend '{backend}'; use auto, native or transformer_lens")
    bridge = inputs.load()
    parse_metric(bridge, metric)
    res = patch(bridge, clean, corrupted, metric=metric, components=comps, backend=backend,
                prepend_bos=inputs.prepend_bos, options={"prepend_bos": inputs.prepend_bos, "dtype": inputs.dtype})
    out = prepare_out_dir(out)
    typer.echo(f"metric {metric}: clean {res.clean:.4g}, corrupted {res.corrupted:.4g} (backend {res.backend})")
    write_outputs(out, "patching.json", res, {stem: (lambda fig=fig: fig) for stem, fig in figures(res).items()})
