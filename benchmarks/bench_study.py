"""Per-unit costs of a study on this machine: load time, seconds and peak memory of each (model, analysis) unit.

Usage: ``.venv/bin/python benchmarks/bench_study.py [--model smollm2-135m] [--ray]`` -> results in
``benchmarks/results/study.json`` (the previous run kept under ``previous_runs``). ``docs/scaling.md`` builds
its arithmetic on these figures.

What is measured, in one run:
- ``load_seconds``: ``load_model(model)`` alone (median of 3; the GGUF conversion is cached before);
- a study of one model with the local engine and ``MI_MASSIVE_KEEP_MODEL=0`` (every unit loads its own model,
  as a Ray task does): each unit's wall seconds (load included) and peak RSS, from ``last_run.json``;
  ``compute_seconds`` = unit seconds - load_seconds, and the tokens each unit pushes through the model;
- with ``--ray``: the same study on an embedded local Ray (all CPUs), wall seconds, and its ratio to the
  local engine's wall seconds (Ray start, worker start-up and parallel units included).
The load average before and after is recorded: compare runs only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "study.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--n-calib", type=int, default=16)
    parser.add_argument("--ray", action="store_true", help="also run the study on a local Ray")
    args = parser.parse_args()
    os.environ["MI_MASSIVE_KEEP_MODEL"] = "0"
    import torch

    from mi_massive.core.io import package_versions, utc_now, write_json
    from mi_massive.core.loading import load_model
    from mi_massive.study import study

    torch.set_num_threads(1)  # what a unit with --cpus-per-task 1 gets (the default)
    load_avg_before = os.getloadavg()
    load_model(args.model)  # warm the conversion cache
    loads = []
    for _ in range(3):
        t = time.perf_counter()
        load_model(args.model)
        loads.append(time.perf_counter() - t)
    load_s = statistics.median(loads)
    settings = dict(corpus="builtin", n_samples=args.n_samples, seq_len=args.seq_len, seed=0,
                    options={"intervene": {"n_calib": args.n_calib}})
    tokens = {"scan": args.n_samples * args.seq_len, "heads": args.n_samples * args.seq_len,
              "attribute": args.n_samples * args.seq_len,
              "intervene": None}  # intervene: two calibration passes (scan, means) + one pass per condition
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rec = study([args.model], tmp, engine="local", progress=False, **settings)
        local_wall = time.perf_counter() - t
        run = json.loads((Path(tmp) / "last_run.json").read_text())
        intervene = json.loads((Path(tmp) / "units" / args.model / "intervene.json").read_text())
        n_cond = len(intervene["runs"])
    tokens["intervene"] = (2 * args.n_calib + args.n_samples * n_cond) * args.seq_len  # calibration: scan + means
    units = {}
    for uid, cost in run["costs"].items():
        name = uid.split("/")[-1]
        compute = max(cost["seconds"] - load_s, 1e-9)
        units[name] = {**cost, "compute_seconds": round(compute, 3), "tokens": tokens[name],
                       "tokens_per_second": round(tokens[name] / compute, 1)}
    result = {"benchmark": "study", "created_utc": utc_now(), "versions": package_versions(),
              "settings": {"model": args.model, **settings, "threads_per_unit": 1, "cpu_count": os.cpu_count(),
                           "engine": "local, MI_MASSIVE_KEEP_MODEL=0 (each unit loads its model)"},
              "load_seconds": [round(x, 3) for x in loads], "load_median_seconds": round(load_s, 3),
              "units": units, "local_wall_seconds": round(local_wall, 2), "complete": rec.complete,
              "intervene_conditions": n_cond}
    if args.ray:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            study([args.model], tmp, engine="ray", progress=False, **settings)
            result["ray_wall_seconds"] = round(time.perf_counter() - t, 2)
            result["ray_over_local"] = round(result["ray_wall_seconds"] / local_wall, 3)
    result["loadavg_before"], result["loadavg_after"] = load_avg_before, os.getloadavg()
    if RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        result["previous_runs"] = ([{k: old.get(k) for k in ("created_utc", "units", "loadavg_before")}]
                                   + old.get("previous_runs", []))[:5]
    write_json(RESULTS, result)
    print(json.dumps({k: result[k] for k in ("load_median_seconds", "units", "local_wall_seconds")}, indent=1))


if __name__ == "__main__":
    main()
