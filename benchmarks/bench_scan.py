"""Scan benchmark on SmolLM2-135M: time vs a bare HF forward, peak memory, cold vs warm load.

Writes ``benchmarks/results/scan.json``. Ratios are measured within one run, interleaving the two
sides (HF, scan, HF, scan, ...) so machine load affects both alike.

    .venv/bin/python benchmarks/bench_scan.py                      # 64 x 512 tokens (several minutes)
    .venv/bin/python benchmarks/bench_scan.py --n-samples 16 --seq-len 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scan.json"

# the peak-memory child and the subprocess runner are bench_devices.py's (this folder is on sys.path when run)
from bench_devices import MEMORY_CHILD, child  # noqa: E402

LOAD_CHILD = r"""
import json, time
t0 = time.perf_counter()
import mi_massive, transformers, transformer_lens.model_bridge  # library imports: a fixed per-process cost
from transformers import AutoModelForCausalLM, AutoTokenizer
t1 = time.perf_counter()
m = mi_massive.load_model("smollm2-135m")
t2 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "load_seconds": t2 - t1}))
"""


def bench_time(n: int, seq_len: int, batch_size: int, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    import mi_massive as mm

    bridge = mm.load_model("smollm2-135m")
    folder = mm.model_info(bridge).extra["converted_copy"]
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    corpus = mm.builtin_corpus(bridge, n_samples=n, seq_len=seq_len, seed=0)
    batch_size = batch_size or corpus.auto_batch_size()

    def hf_forward() -> None:
        with torch.no_grad():
            for _, ids, _ in corpus.batches(batch_size):
                hf(ids)

    def run_scan() -> None:
        mm.scan(bridge, corpus, batch_size=batch_size, progress=False)

    hf_forward()  # warm-up (allocator, kernels)
    hf_times, scan_times = [], []
    for _ in range(repeats):
        t = time.perf_counter(); hf_forward(); hf_times.append(time.perf_counter() - t)
        t = time.perf_counter(); run_scan(); scan_times.append(time.perf_counter() - t)
    hf_best, scan_best = min(hf_times), min(scan_times)
    return {"tokens": f"{n} x {seq_len}", "batch_size": batch_size, "repeats": repeats,
            "hf_forward_seconds": hf_times, "scan_seconds": scan_times,
            "ratio_scan_over_hf_best": scan_best / hf_best,
            "ratio_scan_over_hf_median": sorted(scan_times)[len(scan_times) // 2] / sorted(hf_times)[len(hf_times) // 2],
            "target_ratio": 1.10, "threads": torch.get_num_threads()}


def bench_load() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        cold = child(LOAD_CHILD, env={"MI_MASSIVE_CACHE": cache})
        warm = child(LOAD_CHILD, env={"MI_MASSIVE_CACHE": cache})
    return {"cold": cold, "warm": warm, "target_warm_load_seconds": 3.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the scan's default (~2,048 tokens per pass)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["time", "memory", "load"])
    args = parser.parse_args()
    import mi_massive as mm
    from mi_massive.core.io import package_versions, utc_now  # provenance of the benchmark record

    out: dict = {"benchmark": "scan", "model": "smollm2-135m", "created_utc": utc_now(),
                 "versions": package_versions(), "cpu_count": os.cpu_count()}
    if "load" not in args.skip:
        out["load"] = bench_load()
        print("load:", json.dumps(out["load"]))
    if "memory" not in args.skip:
        mem = child(MEMORY_CHILD, str(args.n_samples), str(args.seq_len), str(args.batch_size), "0")
        out["memory"] = {**mem, "tokens": f"{args.n_samples} x {args.seq_len}", "target_peak_mib": 2048}
        print("memory:", json.dumps(out["memory"]))
    if "time" not in args.skip:
        out["time"] = bench_time(args.n_samples, args.seq_len, args.batch_size, args.repeats)
        print("time:", json.dumps(out["time"]))
    mm.write_json(RESULTS, out)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
