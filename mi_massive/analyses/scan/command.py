"""``mi-massive scan``: the massive-activation scan, its JSON record, summary table and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import AbsThresholdOpt, FiguresOpt, Inputs, RelThresholdOpt, command, echo_table, out_option, write_outputs
from mi_massive.errors import MiMassiveError


MAX_DIMS_SHOWN = 8


def _dims_cell(dims: list[int]) -> str:
    """A layer's massive dims for the table: all of them up to :data:`MAX_DIMS_SHOWN`, else the first ones and the count
    (thresholds of 0 flag every dim; the JSON keeps the full list).

    >>> _dims_cell([]), _dims_cell([507]), _dims_cell(list(range(576)))
    ('-', '507', '0,1,2,3,4,5,6,7,... (576 dims)')
    """
    if len(dims) <= MAX_DIMS_SHOWN:
        return ",".join(map(str, dims)) or "-"
    return ",".join(map(str, dims[:MAX_DIMS_SHOWN])) + f",... ({len(dims)} dims)"


def print_scan_summary(result) -> None:
    """Layer table (top-1, median, ratio, massive dims) and a one-paragraph verdict."""
    rows = []
    for r in result.layers:
        rows.append([r.label, f"{r.top_values[0]:.2f}", f"{r.median:.4f}", f"{r.ratio:.0f}", _dims_cell(r.massive_dims)])
    echo_table(["layer", "top-1 |h|", "median |h|", "top1/median", "massive dims"], rows)
    s = result.summary
    if not s.has_massive:
        typer.echo("no massive activations (|h| > abs and > rel x median) in any layer")
        return
    n_seq, n_layers = len(result.tokens), len(result.layers)
    typer.echo(f"massive entries: {s.n_entries} (an entry = one value h[layer][sequence, position, dim] with |h| above "
               f"both thresholds; counted over {n_seq} sequence{'s' if n_seq != 1 else ''} x {n_layers} layers)")
    dims = ", ".join(f"{d.dim} (max |h| {d.max_abs:.1f}, layers {d.layers[0]}-{d.layers[-1]}, {d.count} entries)"
                     for d in s.dims[:5])
    positions = ", ".join(f"{r.position}: {r.count}" for r in s.positions[:5])
    tokens = ", ".join(f"{r.token!r}: {r.count}" for r in s.tokens[:5])
    typer.echo(f"massive dims: {dims}")
    typer.echo(f"first massive layer: {s.first_layer}")
    typer.echo(f"entries per position (over all layers, sequences and dims): {positions}")
    typer.echo(f"entries per token: {tokens}")
    if result.near_massive_total:
        typer.echo(f"near-massive entries (|h| above the absolute threshold only, not the relative one): "
                   f"{result.near_massive_total}")


@command(batch_size=None)
def scan_command(
    inputs: Inputs,
    top_k: int = typer.Option(3, "--top-k", help="largest |h| values kept per layer and sequence"),
    hooks: Optional[str] = typer.Option(
        None, "--hooks", help="hook kinds, names or patterns, comma-separated: resid_post (default, with the "
        "embeddings), resid_pre, resid_mid, attn_out, mlp_out, ln1, ln2, ln_final (norm outputs), attn.hook_q/k/v "
        "(heads flattened into the feature axis: dim = head * d_head + i), mlp.hook_post, blocks.3.hook_mlp_out, "
        "'blocks.*.hook_mlp_out'"),
    abs_threshold: float = AbsThresholdOpt,
    rel_threshold: float = RelThresholdOpt,
    figures: bool = FiguresOpt,
    out: Path = out_option("scan.json and figures"),
) -> None:
    """Scan every block output (or any --hooks) for massive activations; write OUT/scan.json and figures."""
    from mi_massive.analyses.scan.figures import feature_3d_figure, figures as scan_figures
    from mi_massive.analyses.scan.run import SUN_SENTENCE, feature_view_layer, scan, sentence_activations
    from mi_massive.core.io import prepare_out_dir

    inputs.check(top_k=top_k)
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    result = scan(bridge, data, top_k=top_k, abs_threshold=abs_threshold, rel_threshold=rel_threshold,
                  batch_size=inputs.batch_size, hooks=hooks,
                  options={"dtype": inputs.dtype, "batch_size": inputs.batch_size})
    out = prepare_out_dir(out)
    print_scan_summary(result)

    def feature_3d():
        layer = feature_view_layer(result)
        sentence = inputs.text if inputs.text is not None else SUN_SENTENCE
        h, toks = sentence_activations(bridge, sentence, layer, prepend_bos=inputs.prepend_bos)
        return feature_3d_figure(h, toks, layer=layer, model_name=result.provenance["model"]["name"])

    figs = None
    if figures:
        figs = {stem: (lambda fig=fig: fig) for stem, fig in scan_figures(result).items()}
        from mi_massive.core.loading.vit import is_vision

        # the 3-D view shows a block output on a sentence (not for an image model)
        if feature_view_layer(result) is not None and not is_vision(bridge):
            figs["feature_3d"] = feature_3d
    write_outputs(out, "scan.json", result, figs)
