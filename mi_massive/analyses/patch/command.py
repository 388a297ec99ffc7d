"""``mi-massive patch``: activation patching clean -> corrupted over layers x positions and heads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import (CpusPerTaskOpt, EngineOpt, ShardsOpt, GpusPerTaskOpt, Inputs, MethodOpt, RayAddressOpt,
                                 check_engine, check_positive, command, echo_table, out_option, write_outputs)
from mi_massive.analyses.patch.run import METRIC_HELP
from mi_massive.errors import MiMassiveError

DEFAULT_METRIC = "loss"


def print_patching(res, *, default_metric: bool = False, top: int = 10) -> None:
    """The metric (and whether it is the default), clean/corrupted values, and the top cells as a table."""
    typer.echo(f"metric: {res.metric}{' (default)' if default_metric else ''}; clean {res.clean:.4g}, corrupted "
               f"{res.corrupted:.4g} (backend {res.backend})")
    typer.echo(f"top {top} cells by |patched - corrupted|; normalised effect = (patched - corrupted) / "
               f"(clean - corrupted): 1 = clean restored, 0 = no effect")
    echo_table(["component", "layer", "position / head", "patched", "normalised"],
               [[c["component"], c["layer"], c["where"], f"{c['value']:.4g}",
                 f"{c['normalised']:+.3f}" if c["normalised"] == c["normalised"] else "n/a (clean = corrupted)"]
                for c in res.top_cells(top)])


@command(corpus=False, batch_size=False)
def patch_command(
    inputs: Inputs,
    clean: str = typer.Option(..., "--clean", help="clean prompt"),
    corrupted: str = typer.Option(..., "--corrupted", help="corrupted prompt (same number of tokens)"),
    metric: str = typer.Option(DEFAULT_METRIC, "--metric", help=METRIC_HELP),
    components: str = typer.Option("resid_pre,attn_out,mlp_out,head", "--components"),
    backend: str = typer.Option("auto", "--backend", help="auto (= native), native or transformer_lens"),
    method: str = MethodOpt,
    shards: int = ShardsOpt,
    engine: str = EngineOpt,
    ray_address: Optional[str] = RayAddressOpt,
    cpus_per_task: float = CpusPerTaskOpt,
    gpus_per_task: Optional[float] = GpusPerTaskOpt,
    out: Path = out_option("patching.json and figures"),
) -> None:
    """Patch each activation of the clean run into the corrupted run and record the metric."""
    from mi_massive.analyses.patch.figures import figures
    from mi_massive.analyses.patch.run import check_options, check_patch_inputs, parse_metric, patch
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.core.sizes import gpus_needed

    comps = [c.strip() for c in components.split(",") if c.strip()]
    check_options(comps, backend, method)
    check_positive(shards=shards)
    engine = check_engine(engine, ray_address)
    # what each shard asks Ray for (0 would hide CUDA from it): checked before the model loads
    num_gpus = gpus_needed(inputs.model, inputs.dtype, inputs.device, gpus_per_task) if shards > 1 else 0.0
    if shards > 1 and backend == "transformer_lens":
        raise MiMassiveError("--shards needs the native backend")
    bridge = inputs.load()
    if shards > 1:  # one-line errors here, before any unit starts (the checks patch() makes itself)
        check_patch_inputs(bridge, clean, corrupted, metric=metric, components=comps, backend=backend, method=method,
                           prepend_bos=inputs.prepend_bos)
    else:
        parse_metric(bridge, metric)
    opts = {"prepend_bos": inputs.prepend_bos, "prepend_bos_source": inputs.prepend_bos_source, "dtype": inputs.dtype}
    out = prepare_out_dir(out)
    if shards > 1:
        from mi_massive.analyses.patch.shard import sharded_patch
        from mi_massive.core.units import UnitStore

        res = sharded_patch(UnitStore(out / "shards"), model=inputs.model, n_layers=bridge.cfg.n_layers,
                            shards=shards, engine=engine, ray_address=ray_address, num_cpus=cpus_per_task,
                            num_gpus=num_gpus, dtype=inputs.dtype, device=inputs.device, clean=clean,
                            corrupted=corrupted, metric=metric, components=comps, method=method,
                            prepend_bos=inputs.prepend_bos, options=opts, log=lambda line: typer.echo(line, err=True))
    else:
        res = patch(bridge, clean, corrupted, metric=metric, components=comps, backend=backend, method=method,
                    prepend_bos=inputs.prepend_bos, options=opts)
    print_patching(res, default_metric=metric == DEFAULT_METRIC)
    write_outputs(out, "patching.json", res, {stem: (lambda fig=fig: fig) for stem, fig in figures(res).items()})
