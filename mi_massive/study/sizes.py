"""How many parameters a model spec has, without loading its weights (for the GPUs a unit asks for).

>>> from mi_massive.study.sizes import estimate_params
>>> round(estimate_params("random:llama-2-7b") / 1e9, 2)
6.74

``random:`` specs and Hugging Face directories / hub names are instantiated on the ``meta`` device
(shapes only, no memory); GGUF files are counted from their tensor headers; toys are built (tiny).
None when the spec cannot be sized this way.
"""

from __future__ import annotations

from pathlib import Path


def _count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def estimate_params(spec: str) -> int | None:
    """Parameter count of ``spec`` (None: unknown)."""
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
