"""``mi-massive report``: scan + attention + whatever analyses exist, as one offline HTML page and JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import AbsThresholdOpt, Inputs, RelThresholdOpt, command, out_option
from mi_massive.errors import MiMassiveError


@command(batch_size=8)
def report_command(
    inputs: Inputs,
    abs_threshold: float = AbsThresholdOpt,
    rel_threshold: float = RelThresholdOpt,
    results: Optional[Path] = typer.Option(None, "--results", help="directory with JSON files of earlier commands "
                                           "(heads, ablate, attribute, intervene, ...); default: --out"),
    skip: Optional[str] = typer.Option(None, "--skip", help="analyses not to run now, comma-separated "
                                       "(heads, attribution, ablation, intervention, mlp, svd, tokens, variants)"),
    out: Path = out_option("report.html and JSON files"),
) -> None:
    """Write OUT/report.html (self-contained, offline) with a summary and every figure, plus the JSON files."""
    from mi_massive.core.io import read_json
    from mi_massive.report.run import OPTIONAL_IDS, build_report

    skipped = [s.strip() for s in (skip or "").split(",") if s.strip()]
    unknown = [s for s in skipped if s not in OPTIONAL_IDS]
    if unknown:
        raise MiMassiveError(f"--skip: unknown analysis '{unknown[0]}' (one of {', '.join(OPTIONAL_IDS)})")
    inputs.check()
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    if results is not None and not results.is_dir():
        raise MiMassiveError(f"--results {results} is not a directory")
    if results is not None:  # earlier results read from a directory whose last run did not finish cleanly
        from mi_massive.core.io import MANIFEST, check_out_dir

        problems = [p for p in check_out_dir(results, hashes=False) if not p.startswith(f"no {MANIFEST}")]
        for problem in problems[:3]:
            typer.echo(f"warning: --results {results}: {problem}", err=True)
    bridge = inputs.load()
    data = inputs.make_corpus(bridge)
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "batch_size": inputs.batch_size,
            "dtype": inputs.dtype, "skip": skipped}
    paths = build_report(bridge, inputs.text if inputs.text is not None else data, out,
                         prepend_bos=inputs.prepend_bos, results_dir=results, options=opts, progress=True)
    record = read_json(paths["json"])
    for key, value in record["summary"].items():
        typer.echo(f"{key}: {value}")
    status = ", ".join(f"{s['id']} {s['status']}" for s in record["sections"])
    typer.echo(f"sections: {status}")
    typer.echo(f"wrote {paths['report']} and {', '.join(str(p) for k, p in paths.items() if k != 'report')}")
