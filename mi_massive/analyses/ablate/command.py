"""``mi-massive ablate``: ablate heads / attention / MLPs and compare with a random same-size null."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import echo_table, user_errors
from mi_massive.core.cli import (write_outputs, BatchOpt, BosOpt, CorpusOpt, DtypeOpt, ModelOpt, NSamplesOpt, SeedOpt,
                                   SeqLenOpt, TextOpt, load, make_corpus, parse_index_list, validate_inputs)
from mi_massive.errors import MiMassiveError


@user_errors
def ablate_command(
    model: str = ModelOpt, text: Optional[str] = TextOpt, corpus: Optional[str] = CorpusOpt,
    n_samples: int = NSamplesOpt, seq_len: int = SeqLenOpt, seed: int = SeedOpt, prepend_bos: bool = BosOpt,
    dtype: str = DtypeOpt, batch_size: int = BatchOpt,
    heads: Optional[str] = typer.Option(None, "--heads", help="head set, e.g. '5.1,6.1' or 'L5H1 L6H1'"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="the k heads with the highest sink score"),
    bottom_k: Optional[int] = typer.Option(None, "--bottom-k", help="the k heads with the lowest sink score"),
    all_heads: bool = typer.Option(False, "--all-heads", help="every attention sublayer off (hook_attn_out, b_O too)"),
    all_mlps: bool = typer.Option(False, "--all-mlps", help="every MLP off (hook_mlp_out)"),
    mlp: Optional[str] = typer.Option(None, "--mlp", help="MLP layers to remove together, e.g. '2' or '2,3'"),
    mode: str = typer.Option("zero", "--mode", help="zero, mean or resample"),
    n_null: int = typer.Option(20, "--n-null", help="random same-size sets for the null (>= 20; 0 = none)"),
    track: Optional[str] = typer.Option(None, "--track", help="entries 'pos:dim,...' (default: the scan's)"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (ablation.json and figures)"),
) -> None:
    """Measure per-layer top-1 |h| and the tracked massive entries under each ablation, with CIs and a null."""
    from mi_massive.core.hooks import MODES, check_heads, check_layers, parse_heads
    from mi_massive.analyses.ablate.run import AblationSpec, run_ablations
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.analyses.ablate.figures import ablation_figure

    validate_inputs(model, text, corpus, n_samples=n_samples, seq_len=seq_len, batch_size=batch_size)
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
    bridge = load(model, dtype)
    n = bridge.cfg.n_layers
    specs = []
    if head_set is not None:
        check_heads(bridge, head_set)
        specs.append(AblationSpec("heads " + ",".join(f"L{l}H{h}" for l, h in head_set), "heads", head_set, mode))
    mlp_layers = check_layers(bridge, parse_index_list(mlp, "--mlp"), what="--mlp layer") if mlp is not None else None
    data = make_corpus(bridge, text, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)
    from mi_massive.analyses.scan.run import scan

    s = scan(bridge, data, batch_size=batch_size, progress=False)
    if top_k or bottom_k:
        from mi_massive.analyses.heads.run import head_scores

        scores = head_scores(bridge, data, scan_result=s, batch_size=batch_size, progress=False)
        if top_k:
            specs.append(AblationSpec(f"top-{top_k} sink heads", "heads", scores.top_k(top_k), mode))
        if bottom_k:
            specs.append(AblationSpec(f"bottom-{bottom_k} sink heads", "heads", scores.bottom_k(bottom_k), mode))
    if all_heads:
        specs.append(AblationSpec("all attention off", "attention", list(range(n)), mode, null=False))
    if all_mlps:
        specs.append(AblationSpec("all MLPs off", "mlp", list(range(n)), mode, null=False))
    if mlp_layers:
        specs.append(AblationSpec("MLP " + ",".join(map(str, mlp_layers)), "mlp", mlp_layers, mode))
    if track is not None:
        try:
            tracked = [tuple(int(v) for v in item.split(":")) for item in track.split(",") if item]
            assert all(len(t) == 2 for t in tracked)
        except (ValueError, AssertionError) as err:
            raise MiMassiveError(f"--track takes 'pos:dim,...', got '{track}'") from err
    else:
        tracked = sorted({(p, d) for _l, p, d in s.massive_coordinates()})[:4]
    res = run_ablations(bridge, data, specs, tracked=tracked, n_null=n_null, seed=seed, batch_size=batch_size,
                        options={"prepend_bos": prepend_bos, "dtype": dtype})
    out = prepare_out_dir(out)
    rows = []
    for c in res.conditions:
        for e in c.effects:
            if e.metric == "top1" or e.metric.startswith("entry"):
                if e.layer in (0, n // 2, n - 1) or e.label == "beyond noise" and e.metric != "top1":
                    rows.append([c.name, e.metric, e.layer, f"{e.baseline:.2f}", f"{e.mean:+.2f}",
                                 f"[{e.ci95[0]:+.2f}, {e.ci95[1]:+.2f}]", e.label])
    echo_table(["condition", "metric", "layer", "baseline", "change", "95% CI", "vs null"], rows[:40])
    typer.echo(f"baseline rerun max |diff|: {res.rerun_max_abs_diff:g}")
    figs = {"ablation_top1": lambda: ablation_figure(res, "top1")}
    figs.update({f"ablation_p{p}_d{d}": (lambda p=p, d=d: ablation_figure(res, f"entry p{p} d{d}")) for p, d in tracked})
    write_outputs(out, "ablation.json", res, figs)
