"""An exact median for large tensors, about 2x faster than ``np.median`` (the scan's per-sequence medians).

>>> import numpy as np, torch
>>> x = torch.arange(100_001, dtype=torch.float32).flip(0) ** 1.5
>>> exact_median(x) == float(np.median(x.numpy()))
True

The result is exactly numpy's: the middle value, or the float32 mean of the two middle values for an
even count. How: a sorted strided sample of ~2,048 entries brackets the middle ranks (+-3 sample
standard deviations of the rank), one pass counts the entries below the bracket and keeps those inside
it (a few percent), and ``np.partition`` finds the middle ranks among them. When the bracket misses
them (rare: heavy ties at its edge are still inside, because both bounds are inclusive) it falls back to
``np.median`` on everything. Tensors under 32,768 entries go to ``np.median`` directly.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float

SMALL = 32_768  # below this np.median is as fast
SAMPLE = 2_048  # entries in the bracketing sample


def exact_median(values: Float[torch.Tensor, "..."]) -> float:
    """The median of all entries of ``values`` (numpy's rule), as a Python float."""
    x = values.detach().reshape(-1).float()
    n = x.numel()
    if n == 0:
        raise ValueError("median of an empty tensor")
    if n < SMALL:
        return float(np.median(x.cpu().numpy()))
    k_lo, k_hi = (n - 1) // 2, n // 2  # 0-based ranks of the middle value(s)
    sample = x[:: max(1, n // SAMPLE)].sort().values
    m = sample.numel()
    margin = int(3 * m ** 0.5) + 2
    lo, hi = sample[max(0, m // 2 - margin)], sample[min(m - 1, m // 2 + margin)]
    below = int((x < lo).sum())
    band = x[(x >= lo) & (x <= hi)]
    if below <= k_lo and below + band.numel() > k_hi:
        i, j = k_lo - below, k_hi - below
        part = np.partition(band.cpu().numpy(), [i, j])
        return float(part[i] if i == j else np.mean(part[[i, j]]))
    return float(np.median(x.cpu().numpy()))


def row_medians(a: Float[torch.Tensor, "batch pos d_model"], mask: torch.Tensor) -> Float[torch.Tensor, "batch"]:
    """The median |h| of each sequence over its real positions (numpy's rule), on ``a``'s device.

    On the CPU each row goes through :func:`exact_median` (numpy). On an accelerator the middle ranks are
    found by sorting where the tensor lives, all rows at once when there is no padding, so
    nothing but the ``[batch]`` result leaves the device.
    """
    if a.device.type == "cpu":
        rows = [exact_median(a[i, : int(mask[i].sum())] if bool(mask[i, : int(mask[i].sum())].all()) else a[i][mask[i]])
                for i in range(a.shape[0])]
        return torch.tensor(rows, device=a.device)
    mask = mask.to(a.device)
    if bool(mask.all()):
        return _middle(a.flatten(1).float())
    return torch.cat([_middle(a[i][mask[i]].reshape(1, -1).float()) for i in range(a.shape[0])])


def _middle(x: Float[torch.Tensor, "rows n"]) -> Float[torch.Tensor, "rows"]:
    """Per row: the middle value, or the float32 mean of the two middle values for an even count.

    One sort per call (a radix sort on GPUs: measured faster there than two ``kthvalue`` selections).
    """
    n = x.shape[1]
    ranked = x.sort(dim=1).values
    lo = ranked[:, (n - 1) // 2]
    return lo if n % 2 else (lo + ranked[:, n // 2]) / 2
