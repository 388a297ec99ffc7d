"""``mi-massive study``: the cross-model table over many models, each (model, analysis) a Ray task."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import (BosOpt, CpusPerTaskOpt, DeviceOpt, DtypeOpt, EngineOpt, GpusPerTaskOpt, RayAddressOpt, SeedOpt,
                                 check_engine, echo_table, out_option, user_errors)
from mi_massive.errors import MiMassiveError


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["intervene.n_control=1", "scan.top_k=5"]`` -> ``{"intervene": {"n_control": 1}, "scan": {"top_k": 5}}``
    (values read as JSON when they parse, else kept as text).

    >>> parse_sets(["intervene.n_control=1", "intervene.targets=earliest"])
    {'intervene': {'n_control': 1, 'targets': 'earliest'}}
    >>> parse_sets(["scan.abs_threshold=nan"])
    Traceback (most recent call last):
    ...
    mi_massive.errors.MiMassiveError: --set 'scan.abs_threshold=nan': the value must be a finite number
    """
    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        analysis, dot, name = key.partition(".")
        if not (eq and dot and analysis and name):
            raise MiMassiveError(f"--set '{item}': expected ANALYSIS.KEY=VALUE, e.g. intervene.n_control=1")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        try:
            number = float(parsed) if isinstance(parsed, (int, float, str)) and not isinstance(parsed, bool) else 0.0
        except ValueError:
            number = 0.0  # text that is not a number (e.g. targets=earliest)
        if not math.isfinite(number):
            raise MiMassiveError(f"--set '{item}': the value must be a finite number")
        out.setdefault(analysis, {})[name] = parsed
    return out


def read_models(models: Optional[str], models_file: Optional[Path]) -> list[str]:
    """Model specs from ``--models a,b`` and/or ``--models-file`` (one per line; ``#`` comments)."""
    specs = [m.strip() for m in (models or "").split(",") if m.strip()]
    if models_file is not None:
        try:
            lines = models_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise MiMassiveError(f"cannot read --models-file {models_file}: {getattr(err, 'strerror', None) or err}")
        specs += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not specs:
        raise MiMassiveError("give --models SPEC[,SPEC...] or --models-file FILE")
    return specs


@user_errors
def study_command(
    models: Optional[str] = typer.Option(None, "--models", help="model specs, comma-separated (aliases, toys, "
                                         "random:NAME, HF dirs, hub names)"),
    models_file: Optional[Path] = typer.Option(None, "--models-file", help="a file with one model spec per line"),
    corpus: str = typer.Option("builtin", "--corpus", help="'builtin', 'wikitext-2[:test|valid]' or a UTF-8 text "
                               "file (tokenised by each model)"),
    n_samples: int = typer.Option(8, "--n-samples", help="sequences per model (intervene: evaluation chunks)"),
    seq_len: int = typer.Option(256, "--seq-len", help="tokens per sequence (including BOS)"),
    seed: int = SeedOpt,
    prepend_bos: Optional[bool] = BosOpt,
    dtype: str = DtypeOpt,
    device: Optional[str] = DeviceOpt,
    analyses: str = typer.Option("scan,heads,intervene,attribute", "--analyses",
                                 help="comma-separated: scan, heads, intervene, attribute"),
    sets: list[str] = typer.Option([], "--set", help="pass an option to one analysis: ANALYSIS.KEY=VALUE "
                                   "(e.g. intervene.n_control=1); repeatable"),
    engine: str = EngineOpt,
    ray_address: Optional[str] = RayAddressOpt,
    cpus_per_task: float = CpusPerTaskOpt,
    gpus_per_task: Optional[float] = GpusPerTaskOpt,
    share_models: bool = typer.Option(False, "--share-models/--no-share-models", help="Ray: run each model's "
                                      "analyses in one worker that loads the model once (faster for big models; "
                                      "a worker that dies fails that model's remaining units)"),
    out: Path = out_option("study.json, study.html, units/<model>/<analysis>.json"),
) -> None:
    """Scan, sink heads, zero/mean interventions and attribution for every model; one cross-model table."""
    from mi_massive.study.run import study

    specs = read_models(models, models_file)
    engine = check_engine(engine, ray_address)
    from mi_massive.core.loading import parse_dtype

    parse_dtype(dtype)
    record = study(specs, out, corpus=corpus, n_samples=n_samples, seq_len=seq_len, seed=seed,
                   prepend_bos=prepend_bos, dtype=dtype, device=device,
                   analyses=[a.strip() for a in analyses.split(",") if a.strip()], options=parse_sets(sets),
                   engine=engine, ray_address=ray_address,
                   cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, share_models=share_models,
                   log=lambda line: typer.echo(line, err=True))
    from mi_massive.study.page import study_table

    rows = study_table(record)
    keep = [0, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14]  # the console shows the core columns; study.html has all
    echo_table([rows[0][i] for i in keep], [[r[i] for i in keep] for r in rows[1:]])
    done = sum(u.status == "done" for u in record.units)
    na = [u for u in record.units if u.status == "n/a"]
    typer.echo(f"units: {done} of {len(record.units)} done" + (f", {len(na)} not applicable" if na else "")
               + (f", {len(record.failed)} failed:" if record.failed else ""))
    for u in record.units:
        if u.status != "done":
            typer.echo(f"  {u.id} ({u.status}): {u.reason}")
    typer.echo(f"wrote {out / 'study.json'}, {out / 'study.html'} and units/ (rerun the same command to resume)")
    if record.failed:
        raise typer.Exit(1)
