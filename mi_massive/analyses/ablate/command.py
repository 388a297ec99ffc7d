"""``mi-massive ablate``: ablate heads / attention / MLPs and compare with a random same-size null."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import AblationModeOpt, Inputs, ci_text, command, echo_table, out_option, parse_index_list, write_outputs
from mi_massive.errors import MiMassiveError


@command(batch_size=8)
def ablate_command(
    inputs: Inputs,
    heads: Optional[str] = typer.Option(None, "--heads", help="head set, e.g. '5.1,6.1' or 'L5H1 L6H1'"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="the k heads with the highest sink score"),
    bottom_k: Optional[int] = typer.Option(None, "--bottom-k", help="the k heads with the lowest sink score"),
    all_heads: bool = typer.Option(False, "--all-heads", help="every attention sublayer off (hook_attn_out, b_O too)"),
    all_mlps: bool = typer.Option(False, "--all-mlps", help="every MLP off (hook_mlp_out)"),
    mlp: Optional[str] = typer.Option(None, "--mlp", help="MLP layers to remove together, e.g. '2' or '2,3'"),
    mode: str = AblationModeOpt,
    n_null: int = typer.Option(20, "--n-null", help="random same-size sets for the null (>= 20; 0 = none)"),
    track: Optional[str] = typer.Option(None, "--track", help="entries 'pos:dim,...' (default: the scan's)"),
    out: Path = out_option("ablation.json and figures"),
) -> None:
    """Measure per-layer top-1 |h| and the tracked massive entries under each ablation, with CIs and a null."""
    from mi_massive.analyses.ablate.figures import figures
    from mi_massive.analyses.ablate.run import ablate, parse_tracked
    from mi_massive.analyses.scan.run import scan
    from mi_massive.core.hooks import MODES, check_heads, check_layers
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.core.targets import parse_heads

    inputs.check()
    if mode not in MODES:
        raise MiMassiveError(f"unknown ablation mode '{mode}'; choose one of {', '.join(MODES)}")
    if 0 < n_null < 20 or n_null < 0:
        raise MiMassiveError(f"--n-null must be 0 or at least 20, got {n_null}")
    for name, k in (("top-k", top_k), ("bottom-k", bottom_k)):
        if k is not None and k < 1:
            raise MiMassiveError(f"--{name} must be a positive integer, got {k}")
    head_set = parse_heads(heads) if heads is not None else None
    if not any([head_set, top_k, bottom_k, all_heads, all_mlps, mlp]):
        raise MiMassiveError("nothing to ablate: give --heads, --top-k, --bottom-k, --all-heads, --all-mlps or --mlp")
    tracked = parse_tracked(track, option="--track") if track is not None else None
    bridge = inputs.load()
    if head_set is not None:
        check_heads(bridge, head_set)
    mlp_layers = check_layers(bridge, parse_index_list(mlp, "--mlp"), what="--mlp layer") if mlp is not None else None
    data = inputs.make_corpus(bridge)
    s = scan(bridge, data, batch_size=inputs.batch_size, progress=False)
    res = ablate(bridge, data, heads=head_set, mlps=mlp_layers, top_k=top_k, bottom_k=bottom_k, all_heads=all_heads,
                 all_mlps=all_mlps, mode=mode, n_null=n_null, tracked=tracked, seed=inputs.seed,
                 batch_size=inputs.batch_size, scan_result=s,
                 options={"prepend_bos": inputs.prepend_bos, "dtype": inputs.dtype})
    out = prepare_out_dir(out)
    n = bridge.cfg.n_layers
    first = s.summary["first_layer"]
    shown = {0, n // 2, n - 1} | ({first} if first is not None else set())
    typer.echo(f"{len(data)} sequence(s); first massive block: {first if first is not None else 'none'}; "
               f"rows: blocks {', '.join(map(str, sorted(shown)))} and every change beyond the null's noise")
    rows = []
    for c in res.conditions:
        typer.echo(f"  {c.name}: removes {', '.join(_target_label(c.kind, t) for t in c.targets)} ({c.mode} ablation)")
        for e in c.effects:
            if e.metric == "top1" or e.metric.startswith("entry"):
                if e.layer in shown or e.label == "beyond noise" and e.metric != "top1":
                    rows.append([c.name, e.metric, e.layer, f"{e.baseline:.2f}", f"{e.mean:+.2f}",
                                 ci_text(e.ci95[0], e.ci95[1], len(data)), e.label or "-"])
    echo_table(["condition", "metric", "block", "baseline", "change", "95% CI", "vs null"], rows)
    typer.echo(f"baseline rerun max |diff|: {res.rerun_max_abs_diff:g}")
    write_outputs(out, "ablation.json", res, {stem: (lambda fig=fig: fig) for stem, fig in figures(res).items()})


def _target_label(kind: str, target) -> str:
    """``L5H1`` for a head, ``MLP 3`` / ``attn 3`` for a sublayer, ``L2N17`` for a neuron."""
    if kind == "heads":
        return f"L{target[0]}H{target[1]}"
    if kind == "neurons":
        return f"L{target[0]}N{target[1]}" if isinstance(target, (list, tuple)) else str(target)
    return f"{'MLP' if kind == 'mlp' else 'attn'} {target}"
