"""Benchmark: ``mi-massive patch`` on SmolLM2-135M, the fast path vs ``transformer_lens.patching``, same run.

The case of the issue: clean "When John and Mary went to the store, John gave a drink to", corrupted
"... Mary gave a drink to" (14 tokens, no BOS), metric ``loss`` (the default), components resid_pre,
attn_out, mlp_out and head. Runs alternate (fast, transformer_lens, fast, ...), each timed with the
machine load (``os.getloadavg``) before and after; the record keeps every timing, the largest
absolute difference of every component's grid, and the exact settings. Target: fast <= 60 s on 2
CPU cores, equal to transformer_lens.patching within 1e-5.

    .venv/bin/python benchmarks/bench_patch.py [--threads 2] [--repeats 1] [--metric loss]

Skips (exit 0, with a note) when the SmolLM2 alias is not installed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import mi_massive as mm
from mi_massive.core.io import package_versions, utc_now

OUT = Path(__file__).resolve().parent / "results" / "patch.json"
CLEAN = "When John and Mary went to the store, John gave a drink to"
CORRUPTED = "When John and Mary went to the store, Mary gave a drink to"
COMPONENTS = ["resid_pre", "attn_out", "mlp_out", "head"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="transformer_lens runs (fast runs: one more, around them)")
    ap.add_argument("--metric", default="loss")
    ap.add_argument("--tl-components", default="resid_pre,head",
                    help="components timed against transformer_lens.patching (its full 4-component grid is over "
                         "2,000 full forwards: >30 min here); the fast path also runs all four for the 60 s target")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    try:
        model = mm.load_model("smollm2-135m")
    except mm.MiMassiveError as err:
        print(f"skipped: smollm2-135m is not installed ({err})")
        return
    torch.set_num_threads(args.threads)
    tl_components = [c.strip() for c in args.tl_components.split(",") if c.strip()]
    kw = dict(metric=args.metric, prepend_bos=False, progress=False)
    mm.patch(model, CLEAN, CORRUPTED, metric=args.metric, components=["head"], progress=False)  # warm-up
    runs, results = [], {}
    # alternating: fast on every component (the 60 s target), then fast and TL on the TL components
    order = ["fast_all"] + ["fast", "transformer_lens"] * args.repeats + ["fast"]
    for name in order:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        res = mm.patch(model, CLEAN, CORRUPTED, backend="transformer_lens" if name == "transformer_lens" else "native",
                       components=COMPONENTS if name == "fast_all" else tl_components, **kw)
        seconds = time.perf_counter() - t0
        runs.append({"run": name, "seconds": seconds, "loadavg_before": list(load_before),
                     "loadavg_after": list(os.getloadavg())})
        results[name] = res
        print(f"{name}: {seconds:.1f} s (load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f})", flush=True)
    fast, tl, fast_all = results["fast"], results["transformer_lens"], results["fast_all"]
    diffs = {c: (torch.tensor(fast.results[c]) - torch.tensor(tl.results[c])).abs().max().item() for c in tl_components}
    fast_s = [r["seconds"] for r in runs if r["run"] == "fast"]
    tl_s = [r["seconds"] for r in runs if r["run"] == "transformer_lens"]
    record = {
        "benchmark": "activation patching clean -> corrupted, every cell of every component, one prompt pair",
        "model": "smollm2-135m (fp32, no BOS)", "clean": CLEAN, "corrupted": CORRUPTED,
        "n_tokens": len(fast.clean_tokens), "metric": fast.metric, "components": COMPONENTS,
        "n_cells": sum(len(g) * len(g[0]) for g in fast_all.results.values()),
        "fast_all_components_seconds": next(r["seconds"] for r in runs if r["run"] == "fast_all"),
        "target_fast_all_seconds": 60.0,
        "compared_components": tl_components,
        "n_cells_compared": sum(len(g) * len(g[0]) for g in fast.results.values()),
        "clean_value": fast.clean, "corrupted_value": fast.corrupted,
        "threads": args.threads, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "repeats": args.repeats, "runs": runs,
        "fast_seconds_min": min(fast_s),
        "transformer_lens_seconds_min": min(tl_s),  # on the compared components
        "speedup_min_over_min": min(tl_s) / min(fast_s),
        "max_abs_diff_vs_transformer_lens": diffs, "max_abs_diff": max(diffs.values()),
        "note": "fast = the native backend's default method (skip cells whose clean and corrupted activations are "
                "identical; start each layer's cells from the cached corrupted residual; one patched cell per batch "
                "row; unembed only scored positions from the first changed one). transformer_lens = "
                "transformer_lens.patching get_act_patch_{resid_pre,attn_out,mlp_out,attn_head_out_all_pos} on the "
                "same bridge. Runs alternate; the machine is shared, so each run records the load average.",
        "versions": package_versions(), "created_utc": utc_now(),
    }
    mm.write_json(args.out, record)
    print(f"all 4 components fast: {record['fast_all_components_seconds']:.1f} s; on {','.join(tl_components)}: "
          f"fast {min(fast_s):.1f} s vs transformer_lens {min(tl_s):.1f} s ({record['speedup_min_over_min']:.1f}x); "
          f"max |diff| {record['max_abs_diff']:.2e} -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
