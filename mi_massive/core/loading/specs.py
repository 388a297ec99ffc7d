"""Leaf facts about loading (no imports of the loaders): dtype names and the saved-variant marker file.

>>> parse_dtype("bf16"), parse_dtype("fp32")
(torch.bfloat16, torch.float32)
>>> VARIANT_CONFIG
'mi_massive_variant.json'

``core.loading`` (which loads models) and ``core.variants.io`` (which saves and loads variants) both
need these; keeping them here lets the two import each other's facts without an import circle.
"""

from __future__ import annotations

import torch

from mi_massive.errors import MiMassiveError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}
VARIANT_CONFIG = "mi_massive_variant.json"  # a directory holding this file is a saved variant


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``torch.float32`` from a dtype or a name such as ``"fp32"``, ``"bf16"``, ``"float16"``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise MiMassiveError(f"unsupported dtype {dtype}; use float32, bfloat16 or float16")
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise MiMassiveError(f"unknown dtype '{dtype}'; use one of float32, bfloat16, float16")
    return _DTYPES[key]
