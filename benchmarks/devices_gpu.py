"""GPU section of ``benchmarks/bench_devices.py``: scan vs the plain HF path on SmolLM2 and a random 7B Llama.

Run through the driver (``bench_devices.py --part gpu``), or alone:

    .venv/bin/python benchmarks/devices_gpu.py                           # on a CUDA machine
    .venv/bin/python benchmarks/devices_gpu.py --device cpu --tiny       # logic check on a CPU (tiny shapes)

Returns / prints the ``"gpu"`` section of ``benchmarks/results/devices.json``. Without CUDA (and without
``--device cpu``) the section is ``{"gpu": "not available on this machine"}``: no number is ever estimated.

What is measured, per model, in one process, alternating plain / scan, medians of ``--repeats``:

* ``plain``: the fastest plain way to every block output: ``transformers`` with SDPA attention, the
  decoder only (no unembedding), ``output_hidden_states=True``, same batches as the scan;
* ``scan``: ``mm.scan`` on the bridge (eager HF weights identical to the plain model's);
* tokens/s of each, their ratio (scan / plain, the issue's target is <= 1.10), and the peak device memory
  of each (``torch.cuda.max_memory_allocated`` minus the memory held before the call, i.e. activations and
  workspace on top of the weights; absolute peaks are recorded too);
* the scan's top-1 |h| per layer vs the plain path's hidden states on the first batch (max relative
  difference; SDPA vs eager kernels are the only expected drift);
* ``breakdown``: where the scan's time goes, timed in the same alternation: the forward with its captures
  alone (``capture``), and the statistics of one batch (``reduce_batch``) with each median algorithm
  (``histogram``: sync-free radix select, the CUDA default; ``sort``), whose medians must be equal;
* ``fixed_costs``: what a scan adds per call whatever its size (1 x 8 tokens, scan vs plain forward,
  :func:`fixed_costs`);
* the single-head zero-ablation sweep (``mm.sweep``, method ``fast``) over the first ``--sweep-layers``
  layers of the 7B-shaped model, tracking its planted entry: seconds and heads per second.

Models: ``smollm2-135m`` (skipped, with the reason, when its package is absent) and
``random:llama-2-7b?plant=2:100:3000`` (6.74e9 parameters, random weights, bf16). ``--tiny`` swaps in
``toy-llama`` and ``random:llama-2-7b?tiny=1&plant=1:10:3000`` and 2 x 32 tokens.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

NOT_AVAILABLE = "not available on this machine"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, int | None, int | None]:
    """(seconds, peak bytes above the memory held before, absolute peak bytes); memory only on CUDA."""
    gc.collect()
    before = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - start
    if device.type != "cuda":
        return seconds, None, None
    peak = torch.cuda.max_memory_allocated(device)
    return seconds, peak - before, peak


def _plain_model(spec: str, bridge, device: str, dtype: torch.dtype):
    """An independent SDPA ``transformers`` model with the bridge's weights (built again, not shared)."""
    import mi_massive as mm

    info = mm.model_info(bridge)
    if info.source == "random":
        from mi_massive.core.loading.random import build_random_hf, parse_random_spec
        from mi_massive.core.loading.toy import plant_massive_activation

        name, plant, tiny = parse_random_spec(spec)
        hf = build_random_hf(name, device=device, dtype=dtype, seed=info.extra["seed"], tiny=tiny,
                             attn_implementation="sdpa")
        for layer, dim, value in plant:
            plant_massive_activation(hf, layer, dim, value)
        return hf
    if info.source == "toy":
        from mi_massive.core.loading.toy import build_toy_hf, plant_massive_activation

        hf = build_toy_hf(spec)
        hf.config._attn_implementation = "sdpa"
        return hf.to(device=device, dtype=dtype).eval()
    from transformers import AutoModelForCausalLM

    folder = info.extra["converted_copy"]
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa", dtype=dtype,
                                                device_map=device).eval()


def _decoder(hf):
    """The decoder stack without the unembedding (``model.model`` for Llama-like models)."""
    return getattr(hf, hf.base_model_prefix, hf)


def fixed_costs(bridge, decoder, device: torch.device, repeats: int = 5) -> dict:
    """The scan's fixed cost per call: ``mm.scan`` of 1 x 8 tokens vs the plain decoder forward of the same ids,
    alternating, medians of ``repeats`` (milliseconds). With so few tokens the forward is mostly Python and kernel
    launches, so ``scan_minus_plain_ms`` is what a scan adds per call on this host (routing checks, hooks, the
    reduction's launches and reads, provenance, the record) whatever the batch size."""
    import mi_massive as mm

    small = mm.builtin_corpus(bridge, n_samples=1, seq_len=8, seed=0, prepend_bos=True)
    ids = torch.tensor(small.sequences, device=device)

    def plain() -> None:
        with torch.inference_mode():
            decoder(ids, output_hidden_states=True)

    def scan() -> None:
        mm.scan(bridge, small, progress=False)

    plain(), scan()
    runs: dict[str, list[float]] = {"plain": [], "scan": []}
    for _ in range(repeats):
        runs["plain"].append(_timed(plain, device)[0] * 1000)
        runs["scan"].append(_timed(scan, device)[0] * 1000)
    plain_ms, scan_ms = statistics.median(runs["plain"]), statistics.median(runs["scan"])
    return {"tokens": "1 x 8", "repeats": repeats, "plain_ms": runs["plain"], "scan_ms": runs["scan"],
            "plain_median_ms": plain_ms, "scan_median_ms": scan_ms, "scan_minus_plain_ms": scan_ms - plain_ms}


def bench_model(spec: str, *, device: str, dtype: torch.dtype, n_samples: int, seq_len: int, batch_size: int,
                repeats: int, sweep_layers: int = 0, sweep_entry: tuple[int, int, int] | None = None) -> dict:
    """One model's record (see the module docstring)."""
    import mi_massive as mm

    dev = torch.device(device)
    t0 = time.perf_counter()
    bridge = mm.load_model(spec, device=device, dtype=dtype)
    load_seconds = time.perf_counter() - t0
    info = mm.model_info(bridge)
    hf = _plain_model(spec, bridge, device, dtype)
    decoder = _decoder(hf)
    corpus = mm.builtin_corpus(bridge, n_samples=n_samples, seq_len=seq_len, seed=0, prepend_bos=True)
    ids = torch.tensor(corpus.sequences, device=dev)
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]

    def plain() -> None:
        with torch.inference_mode():
            for b in batches:
                decoder(b, output_hidden_states=True)

    def run_scan() -> Any:
        return mm.scan(bridge, corpus, batch_size=batch_size, progress=False)

    from mi_massive.analyses.scan.reduce import reduce_batch
    from mi_massive.core.engine import iter_corpus
    from mi_massive.core.names import resid_names

    names = resid_names(bridge.cfg.n_layers, include_embed=True)

    def capture() -> None:  # the scan's forward and captures alone, no statistics
        for _ in iter_corpus(bridge, corpus, names, batch_size=batch_size, route="auto", progress=False,
                             to_float32=False, check=False):  # as the scan captures
            pass

    plain()
    scan_result = run_scan()  # warm-up (kernels, allocator) and the numbers checked below
    plain_runs, scan_runs = [], []
    for _ in range(repeats):
        plain_runs.append(_timed(plain, dev))
        scan_runs.append(_timed(run_scan, dev))

    # the breakdown after the timing above, so its held first batch never counts in those peaks
    first_indices, _ids, first_mask, _lg, first_acts = next(iter_corpus(
        bridge, corpus, names, batch_size=batch_size, route="auto", progress=False, to_float32=False, check=False))
    lengths = [corpus.lengths[i] for i in first_indices]

    def reducer(method: str) -> Callable[[], Any]:  # one batch's statistics, by median algorithm
        return lambda: reduce_batch(first_acts, names, first_mask, lengths=lengths, median=method)

    methods = ("histogram", "sort")
    reduced = {m: reducer(m)() for m in methods}
    same = all(reduced[m][n].median.tolist() == reduced[methods[0]][n].median.tolist() for m in methods for n in names)
    capture()
    breakdown_plain_runs, capture_runs = [], []
    reduce_runs: dict[str, list] = {m: [] for m in methods}
    for _ in range(repeats):
        breakdown_plain_runs.append(_timed(plain, dev))
        capture_runs.append(_timed(capture, dev))
        for m in methods:
            reduce_runs[m].append(_timed(reducer(m), dev))
    del first_acts, reduced

    with torch.inference_mode():  # scan top-1 |h| per layer vs the plain path, first batch only
        hidden = decoder(batches[0], output_hidden_states=True).hidden_states
    first = scan_result.layers
    rel = 0.0
    n_layers = bridge.cfg.n_layers
    for layer in range(n_layers - 1):  # the last hidden state is after the final norm in transformers
        ref = hidden[layer + 1].float().abs().amax().item()
        ours = max(scan_result.layer(layer).per_sequence["top_values"][s][0] for s in range(len(batches[0])))
        rel = max(rel, abs(ours - ref) / max(ref, 1e-30))
    del first

    tokens = n_samples * seq_len
    med = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
    plain_s, scan_s = med(plain_runs, 0), med(scan_runs, 0)
    record: dict[str, Any] = {
        "spec": spec, "source": info.source, "fingerprint": info.fingerprint, "architecture": info.architecture,
        "n_params": sum(p.numel() for p in hf.parameters()), "dtype": str(dtype).replace("torch.", ""),
        "device": str(dev), "n_samples": n_samples, "seq_len": seq_len, "batch_size": batch_size,
        "repeats": repeats, "load_seconds": load_seconds,
        "plain_seconds": [r[0] for r in plain_runs], "scan_seconds": [r[0] for r in scan_runs],
        "plain_median_seconds": plain_s, "scan_median_seconds": scan_s,
        "plain_tokens_per_second": tokens / plain_s, "scan_tokens_per_second": tokens / scan_s,
        "ratio_scan_to_plain": scan_s / plain_s,
        "max_rel_diff_top1_vs_plain": rel,
        "massive_found": scan_result.summary.get("first_layer"),
        "breakdown": {
            "what": "capture: the scan's forward and captures alone (iter_corpus, route auto, model dtype); "
                    "reduce: the statistics of the first batch (reduce_batch) by median algorithm; timed after "
                    "the plain/scan loop (the held batch stays out of its peaks), alternating with plain",
            "plain_median_seconds": med(breakdown_plain_runs, 0),
            "capture_median_seconds": med(capture_runs, 0),
            "capture_over_plain": med(capture_runs, 0) / med(breakdown_plain_runs, 0),
            "reduce_first_batch_median_seconds": {m: med(reduce_runs[m], 0) for m in methods},
            "medians_equal_across_methods": same,
        },
    }
    if dev.type == "cuda":
        record.update({
            "plain_peak_extra_bytes": max(r[1] for r in plain_runs), "scan_peak_extra_bytes": max(r[1] for r in scan_runs),
            "plain_peak_bytes": max(r[2] for r in plain_runs), "scan_peak_bytes": max(r[2] for r in scan_runs),
        })
    record["fixed_costs"] = fixed_costs(bridge, decoder, dev, repeats=max(repeats, 5))
    if info.source == "random":
        record["weights"] = "RANDOM"
    del hf, decoder
    gc.collect()
    if sweep_layers and sweep_entry is not None:
        layers = list(range(min(sweep_layers, n_layers)))
        sweep_corpus = mm.builtin_corpus(bridge, n_samples=min(n_samples, 2), seq_len=seq_len, seed=0,
                                         prepend_bos=True)
        n_heads = len(layers) * bridge.cfg.n_heads
        record["head_sweep"] = {"layers": layers, "entry": list(sweep_entry), "n_heads_swept": n_heads,
                                "n_samples": len(sweep_corpus.sequences), "seq_len": seq_len}
        try:
            mm.sweep(bridge, sweep_corpus, [sweep_entry], layers=layers[:1], method="fast", progress=False)  # warm-up
            out: dict[str, Any] = {}
            seconds, extra, peak = _timed(lambda: out.setdefault("r", mm.sweep(
                bridge, sweep_corpus, [sweep_entry], layers=layers, method="fast", progress=False)), dev)
            record["head_sweep"].update(seconds=seconds, heads_per_second=n_heads / seconds,
                                        peak_extra_bytes=extra, peak_bytes=peak,
                                        baseline=out["r"].baseline)
        except Exception as err:  # keep the other numbers; say what failed
            record["head_sweep"]["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    del bridge
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return record


def gpu_part(device: str = "cuda", *, tiny: bool = False, repeats: int = 3, n_samples: int = 8,
             seq_len: int = 256, batch_size: int = 8, sweep_layers: int = 4) -> dict:
    """The ``gpu`` section: ``{"gpu": NOT_AVAILABLE}`` without CUDA, unless ``device`` is explicitly the CPU."""
    import mi_massive as mm
    from mi_massive.core.io import package_versions, utc_now

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return {"gpu": NOT_AVAILABLE}
    if tiny:
        n_samples, seq_len, batch_size, sweep_layers = 2, 32, 2, 2
        specs = ["toy-llama", "random:llama-2-7b?tiny=1&plant=1:10:3000"]
        entry = (1, 0, 10)
    else:
        specs = ["smollm2-135m", "random:llama-2-7b?plant=2:100:3000"]
        entry = (3, 0, 100)
    section: dict[str, Any] = {
        "device": str(dev), "tiny": tiny, "created_utc": utc_now(), "versions": package_versions(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        section.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory)
    else:
        section["note"] = "run on the CPU to check the benchmark's logic (--device cpu); not GPU figures"
    models = {}
    for spec in specs:
        dtype = torch.bfloat16
        is_7b = spec.startswith("random:")
        try:
            models[spec] = bench_model(spec, device=device, dtype=dtype, n_samples=n_samples, seq_len=seq_len,
                                       batch_size=batch_size, repeats=repeats,
                                       sweep_layers=sweep_layers if is_7b else 0, sweep_entry=entry if is_7b else None)
        except mm.MiMassiveError as err:  # e.g. the SmolLM2 package is not installed on the GPU machine
            models[spec] = {"skipped": str(err)}
        print(json.dumps({spec: {k: v for k, v in models[spec].items() if not isinstance(v, (list, dict))}}),
              flush=True)
    section["models"] = models
    return {"gpu": section}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The GPU section's options (shared with ``bench_devices.py``)."""
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:<i>, or cpu to check the logic")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and 2 x 32 tokens (logic check)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu-n-samples", type=int, default=8)
    ap.add_argument("--gpu-seq-len", type=int, default=256)
    ap.add_argument("--gpu-batch-size", type=int, default=8)
    ap.add_argument("--sweep-layers", type=int, default=4, help="layers of the 7B shape whose heads are swept")


def from_args(args: argparse.Namespace) -> dict:
    return gpu_part(args.device, tiny=args.tiny, repeats=args.repeats, n_samples=args.gpu_n_samples,
                    seq_len=args.gpu_seq_len, batch_size=args.gpu_batch_size, sweep_layers=args.sweep_layers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    print(json.dumps(from_args(parser.parse_args()), indent=1, default=str))
