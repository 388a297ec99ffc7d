"""Counting the calls that make the host wait for a device: a test helper (imported as ``host_reads``).

>>> import torch
>>> with CountHostReads() as counter:
...     _ = torch.ones(3).sum().tolist()
>>> counter.reads
['tolist']
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

HOST_READS = {"__bool__", "__int__", "__float__", "__index__", "tolist", "cpu", "item", "nonzero", "masked_select",
              "unique", "bincount", "repeat_interleave"}


class CountHostReads(TorchFunctionMode):
    """Counts the calls that make the host wait for a device (on a GPU): reading values back or sizing by them."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        bool_index = name == "__getitem__" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                                    for i in (args[1] if isinstance(args[1], tuple) else (args[1],)))
        if name in HOST_READS or bool_index:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))
