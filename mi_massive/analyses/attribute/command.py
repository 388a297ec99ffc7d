"""``mi-massive attribute``: exact decomposition of a residual entry h_L[t, d] into its writers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import Inputs, command, echo_table, out_option, write_outputs


@command(batch_size=2)
def attribute_command(
    inputs: Inputs,
    layer: Optional[int] = typer.Option(None, "--layer", help="block whose output holds the entry (default: "
                                        "the first massive layer of a scan)"),
    position: int = typer.Option(0, "--position", help="token position"),
    dim: Optional[int] = typer.Option(None, "--dim", help="residual dim (default: the scan's top massive dim)"),
    top: int = typer.Option(12, "--top", help="rows of the writer table"),
    out: Path = out_option("attribution.json and figure"),
) -> None:
    """Who writes h_L[t, d]: embeddings, every head, attention biases, every MLP, the dominant MLP's neurons."""
    from mi_massive.analyses.attribute.figures import figures
    from mi_massive.analyses.attribute.run import attribute
    from mi_massive.core.io import prepare_out_dir
    from mi_massive.errors import MiMassiveError

    inputs.check(top=top)
    bridge = inputs.load()
    if layer is not None and not 0 <= layer < bridge.cfg.n_layers:
        raise MiMassiveError(f"--layer {layer} out of range: the model has {bridge.cfg.n_layers} layers")
    data = inputs.make_corpus(bridge)
    if layer is None or dim is None:
        from mi_massive.analyses.scan.run import scan

        s = scan(bridge, data, batch_size=inputs.batch_size, progress=False).summary
        if not s.has_massive:
            raise MiMassiveError("no massive activation found: give --layer and --dim explicitly")
        layer = s.first_layer if layer is None else layer
        dim = s.dims[0].dim if dim is None else dim
    res = attribute(bridge, data, layer, position, dim, batch_size=inputs.batch_size,
                    options={"prepend_bos": inputs.prepend_bos, "dtype": inputs.dtype})
    out = prepare_out_dir(out)
    typer.echo(f"h_{layer}[pos {position}, dim {dim}] = {res.residual:.3f} (mean over {len(data)} sequence(s)); "
               f"sum of terms {res.total:.3f}, relative error {res.rel_error:.1e}")
    norms = res.provenance["options"].get("linearised_norms")
    if norms:
        typer.echo(f"post-sublayer norms ({', '.join(norms)}) linearised at the RMS scale this forward used: "
                   f"every head/MLP/neuron term is multiplied by that frozen scale x gain (exact for this forward)")
    echo_table(["term", "contribution", "share"], [[c.label, f"{c.value:.3f}", f"{c.value / res.residual:.1%}"
                                                   if res.residual else "-"] for c in res.top_terms(top)])
    neurons = res.top(5, kinds=("neuron",))
    typer.echo(f"dominant MLP {res.dominant_mlp}, top neurons: " + ", ".join(f"{c.index} ({c.value:.2f})" for c in neurons))
    write_outputs(out, "attribution.json", res, {stem: (lambda fig=fig: fig) for stem, fig in figures(res).items()})
