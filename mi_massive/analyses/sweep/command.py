"""``mi-massive sweep``: ablate every head (and every MLP) alone; rank them by their effect on a massive entry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import (AblationModeOpt, CpusPerTaskOpt, DimOpt, EngineOpt, ShardsOpt, FiguresOpt, GpusPerTaskOpt, Inputs,
                                 LayerOpt, MethodOpt, RayAddressOpt, check_engine, command, echo_table, out_option,
                                 write_outputs)

PARTIAL = "sweep.partial.json"


def print_ranked(res, top: int = 15) -> None:
    """The ``top`` heads/MLPs by |effect| on the first metric, then the loss effect when tracked."""
    metric = res.metric_names[0]
    base = sum(r[0] for r in res.baseline) / len(res.baseline)
    loss_col = res.metric_names.index("loss") if "loss" in res.metric_names and len(res.metric_names) > 1 else None
    typer.echo(f"{res.mode} ablation of {sum(len(h) for h in res.effect)} heads"
               f"{f' and {len(res.mlp_effect)} MLPs' if res.mlp_effect is not None else ''}, one at a time; "
               f"metric: {metric} (baseline {base:.4g}, mean over {len(res.baseline)} sequence(s)); "
               f"effect = ablated - baseline")
    rows = []
    for r in res.ranked(0, top):
        row = [r["component"], f"{r['effect']:+.4g}", f"{100 * r['relative']:+.1f}%" if r["relative"] == r["relative"]
               else "n/a"]
        if loss_col is not None:
            eff = res.effect[r["layer"]][r["head"]] if r["kind"] == "head" else res.mlp_effect[r["layer"]]
            row.append(f"{eff[loss_col]:+.4g}")
        rows.append(row)
    echo_table(["ablated", f"effect on {metric}", "relative"] + (["loss effect (nats)"] if loss_col is not None
                                                                  else []), rows)


@command(batch_size=8)
def sweep_command(
    inputs: Inputs,
    layer: Optional[int] = LayerOpt,
    dim: Optional[int] = DimOpt,
    mode: str = AblationModeOpt,
    mlps: bool = typer.Option(True, "--mlps/--no-mlps", help="also ablate each MLP sublayer alone"),
    loss: bool = typer.Option(False, "--loss/--no-loss", help="also track the mean next-token loss (runs every "
                              "block: slower)"),
    method: str = MethodOpt,
    resume: bool = typer.Option(True, "--resume/--no-resume", help=f"keep partial results in OUT/{PARTIAL} and "
                                "continue an interrupted run with the same options"),
    shards: int = ShardsOpt,
    engine: str = EngineOpt,
    ray_address: Optional[str] = RayAddressOpt,
    cpus_per_task: float = CpusPerTaskOpt,
    gpus_per_task: Optional[float] = GpusPerTaskOpt,
    figures: bool = FiguresOpt,
    out: Path = out_option(f"sweep.json, sweep_heads/sweep_mlps figures; {PARTIAL} while running"),
) -> None:
    """Ablate every head (zero or mean; resample is not supported here) and every MLP alone; rank them by their
    effect on the massive entry h_layer[0, dim] (default: the first massive layer and its largest dim)."""
    from mi_massive.analyses.mlp.run import resolve_layer
    from mi_massive.analyses.sweep.figures import figures as figs
    from mi_massive.analyses.sweep.run import sweep
    from mi_massive.core.engine import run_capture
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.core.names import act_name
    from mi_massive.core.sizes import gpus_needed
    from mi_massive.errors import MiMassiveError

    inputs.check(shards=shards)
    engine = check_engine(engine, ray_address)
    if mode not in ("zero", "mean"):
        raise MiMassiveError(f"the sweep supports --mode zero or mean, not '{mode}' (resample: use mi-massive ablate)")
    if method not in ("fast", "naive"):
        raise MiMassiveError(f"unknown --method '{method}'; use fast or naive")
    # what each shard asks Ray for (0 would hide CUDA from it): checked before the model loads
    num_gpus = gpus_needed(inputs.model, inputs.dtype, inputs.device, gpus_per_task) if shards > 1 else 0.0
    out = prepare_out_dir(out)
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    layer = resolve_layer(bridge, data, layer, batch_size=inputs.batch_size or 8)
    name = act_name("resid_post", layer)
    if dim is None:
        _, ids, mask = next(data.batches(inputs.batch_size or 8))
        dim = int(run_capture(bridge, ids, [name], mask=mask)[1][name][:, 0].abs().amax(0).argmax())
    elif not 0 <= dim < bridge.cfg.d_model:
        raise MiMassiveError(f"--dim {dim} out of range: d_model is {bridge.cfg.d_model}")
    if shards > 1:
        from mi_massive.analyses.sweep.shard import sharded_sweep
        from mi_massive.core.units import UnitStore

        typer.echo(f"tracking h_{layer}[position 0, dim {dim}] ({name}); {mode} ablation, method {method}; "
                   f"{shards} shards over layers")
        corpus_args = {"text": inputs.text, "corpus": inputs.corpus, "n_samples": inputs.n_samples,
                       "seq_len": inputs.seq_len, "seed": inputs.seed, "prepend_bos": inputs.prepend_bos,
                       "prepend_bos_source": inputs.prepend_bos_source}
        res = sharded_sweep(UnitStore(out / "shards"), model=inputs.model, n_layers=bridge.cfg.n_layers,
                            shards=shards, engine=engine, ray_address=ray_address, num_cpus=cpus_per_task,
                            num_gpus=num_gpus, dtype=inputs.dtype, device=inputs.device,
                            corpus=corpus_args, entries=[[layer, 0, dim]], loss=loss, mlps=mlps, mode=mode,
                            method=method, batch_size=inputs.batch_size or 8,
                            log=lambda line: typer.echo(line, err=True))
        print_ranked(res)
        write_outputs(out, "sweep.json", res, {k: (lambda f=f: f) for k, f in figs(res).items()} if figures else None)
        return
    means = None
    if mode == "mean":
        from mi_massive.core.references import reference_means

        names = [act_name(k, l) for l in range(bridge.cfg.n_layers) for k in (["z", "mlp_out"] if mlps else ["z"])]
        means = reference_means(bridge, data, names, batch_size=inputs.batch_size or 8, progress=True)
    typer.echo(f"tracking h_{layer}[position 0, dim {dim}] ({name}); {mode} ablation, method {method}")
    partial = out / PARTIAL
    if not resume and partial.exists():
        partial.unlink()
    res = sweep(bridge, data, [(layer, 0, dim)], loss=loss, mlps=mlps, mode=mode, means=means, method=method,
                batch_size=inputs.batch_size or 8, partial_path=partial)
    print_ranked(res)
    write_outputs(out, "sweep.json", res, {k: (lambda f=f: f) for k, f in figs(res).items()} if figures else None)
    partial.unlink(missing_ok=True)  # complete: the partial file is no longer needed
