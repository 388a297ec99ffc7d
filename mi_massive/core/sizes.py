"""How big a model spec is without loading its weights, and how many GPUs one unit of work on it asks for.

>>> from mi_massive.core.sizes import estimate_params, gpus_needed
>>> round(estimate_params("random:llama-2-7b") / 1e9, 2)
6.74
>>> gpus_needed("random:llama-2-7b", "bfloat16", device="cpu"), gpus_needed("toy-llama", "float32", num_gpus=2)
(0.0, 2.0)

``random:`` specs and Hugging Face directories / hub names are instantiated on the ``meta`` device
(shapes only, no memory); GGUF files are counted from their tensor headers; toys are built (tiny).
:func:`gpus_needed` is what the study's units and the sharded ``sweep`` / ``patch`` units ask Ray for.
"""

from __future__ import annotations

import math
from pathlib import Path

from mi_massive.errors import MiMassiveError

HEADROOM = 1.2  # weights x this must fit: activations, caches and the CUDA context take the rest


def _count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def estimate_params(spec: str) -> int | None:
    """Parameter count of ``spec`` (None: it cannot be sized this way, e.g. a hub name while offline)."""
    import torch

    from mi_massive.core.loading import ALIASES, TOY_KINDS, alias_path

    try:
        if spec in TOY_KINDS:
            from mi_massive.core.loading import build_toy_hf

            return _count(build_toy_hf(spec))
        if spec.startswith("random:"):
            from mi_massive.core.loading.random import build_random_hf, parse_random_spec

            name, _, tiny = parse_random_spec(spec)
            return _count(build_random_hf(name, device="meta", tiny=tiny))
        path = alias_path(ALIASES[spec]) if spec in ALIASES else Path(spec).expanduser()
        if path is not None and path.is_file() and path.suffix.lower() == ".gguf":
            import gguf

            return int(sum(int(t.n_elements) for t in gguf.GGUFReader(str(path)).tensors))
        from transformers import AutoConfig, AutoModelForCausalLM

        from mi_massive.core.loading import _hub_reachable

        if not (path is not None and path.is_dir()) and not _hub_reachable():
            return None
        config = AutoConfig.from_pretrained(str(path) if path is not None and path.is_dir() else spec)
        with torch.device("meta"):
            return _count(AutoModelForCausalLM.from_config(config))
    except Exception:  # sizing is a hint for the scheduler; the unit itself reports real errors
        return None


def cuda_memory_gib() -> float | None:
    """Total memory of this machine's CUDA device 0 in GiB (None without CUDA)."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else None


def gpus_needed(spec: str, dtype: str = "float32", device: str | None = None, num_gpus: float | None = None,
                gpu_memory_gib: float | None = None) -> float:
    """GPUs one unit of work on ``spec`` asks Ray for (Ray hides CUDA from a task that asks for 0).

    ``num_gpus`` when given (0 included); else 0 without CUDA here or when ``device`` is not a CUDA device
    (``cpu``, ``mps``); else ceil(1.2 x parameters x bytes per parameter at ``dtype`` / GPU memory), at
    least 1 (1 when the spec cannot be sized, :func:`estimate_params`). GPU memory: ``gpu_memory_gib``
    (the study passes its ``gpu_memory_gib``, default 80: a cluster's GPUs may differ from this machine's),
    else the total memory of this machine's CUDA device 0 (the sharded ``sweep`` / ``patch``). One-line
    :class:`MiMassiveError` for a negative ``num_gpus``, a memory <= 0 or an unknown ``dtype``.
    """
    if num_gpus is not None:
        if not (num_gpus >= 0 and math.isfinite(num_gpus)):
            raise MiMassiveError(f"--gpus-per-task must be a non-negative number, got {num_gpus}")
        return float(num_gpus)
    if (device is not None and not str(device).startswith("cuda")) or (here := cuda_memory_gib()) is None:
        return 0.0
    gpu_memory_gib = here if gpu_memory_gib is None else gpu_memory_gib
    if not gpu_memory_gib > 0:
        raise MiMassiveError(f"GPU memory must be a positive number of GiB, got {gpu_memory_gib}")
    from mi_massive.core.loading.specs import parse_dtype

    bytes_per = parse_dtype(dtype).itemsize
    n = estimate_params(spec)
    if n is None:
        return 1.0
    return float(max(1, math.ceil(HEADROOM * n * bytes_per / (gpu_memory_gib * 2**30))))
