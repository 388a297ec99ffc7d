"""``mi-massive patch``: activation patching clean -> corrupted over layers x positions and heads."""

from __future__ import annotations

from pathlib import Path

import typer

from mi_massive.core.cli import user_errors
from mi_massive.core.cli import write_outputs, BosOpt, DtypeOpt, ModelOpt


@user_errors
def patch_command(
    model: str = ModelOpt,
    clean: str = typer.Option(..., "--clean", help="clean prompt"),
    corrupted: str = typer.Option(..., "--corrupted", help="corrupted prompt (same number of tokens)"),
    metric: str = typer.Option("loss", "--metric", help="entry:L:P:D, logit_diff:A:B (token ids) or loss"),
    components: str = typer.Option("resid_pre,attn_out,mlp_out,head", "--components"),
    backend: str = typer.Option("auto", "--backend", help="auto, native or transformer_lens"),
    prepend_bos: bool = BosOpt, dtype: str = DtypeOpt,
    out: Path = typer.Option(..., "--out", "-o", help="output directory (patching.json and figures)"),
) -> None:
    """Patch each activation of the clean run into the corrupted run and record the metric."""
    import torch

    from mi_massive.core.corpus import text_corpus
    from mi_massive.errors import MiMassiveError
    from mi_massive.analyses.patch.run import COMPONENTS, parse_metric, patch
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.analyses.patch.figures import patching_figure

    comps = [c.strip() for c in components.split(",") if c.strip()]
    bad = [c for c in comps if c not in COMPONENTS]
    if bad or not comps:
        raise MiMassiveError(f"unknown component '{bad[0] if bad else ''}'; choose from {', '.join(COMPONENTS)}")
    if backend not in ("auto", "native", "transformer_lens"):
        raise MiMassiveError(f"unknown backend '{backend}'; use auto, native or transformer_lens")
    bridge = load_model_quiet(model, dtype)
    parse_metric(bridge, metric)
    ids = [torch.tensor(text_corpus(bridge, t, prepend_bos=prepend_bos).sequences) for t in (clean, corrupted)]
    res = patch(bridge, ids[0], ids[1], metric=metric, components=comps, backend=backend,
                options={"prepend_bos": prepend_bos, "dtype": dtype})
    out = prepare_out_dir(out)
    typer.echo(f"metric {metric}: clean {res.clean:.4g}, corrupted {res.corrupted:.4g} (backend {res.backend})")
    write_outputs(out, "patching.json", res, {f"patch_{c}": (lambda c=c: patching_figure(res, c)) for c in comps})


def load_model_quiet(model: str, dtype: str):
    from mi_massive.core.cli import load

    return load(model, dtype)
