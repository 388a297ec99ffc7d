"""An exact median for large tensors, about 4x faster than ``np.median`` (the scan's per-sequence medians).

>>> import numpy as np, torch
>>> x = torch.arange(100_001, dtype=torch.float32).flip(0) ** 1.5
>>> exact_median(x) == float(np.median(x.numpy()))
True

The result is exactly numpy's: the middle value, or the float32 mean of the two middle values for an
even count. How: a sorted random sample of 8,192 entries (fixed positions per length: deterministic)
brackets the middle ranks (+-2 sqrt(8192) sample ranks, 4 standard deviations of the sample median's rank),
one pass counts the entries below the bracket and keeps those inside it (~4%), and ``np.partition`` finds
the middle ranks among them. When the bracket misses them (about 1 row in 10,000: heavy ties at its edge
are still inside, because both bounds are inclusive) it falls back to ``np.median`` on everything. The
sample is random rather than strided because a stride through [pos, d_model] would visit a few dims only.
Tensors under 32,768 entries go to ``np.median`` directly. All numpy: its loops release the GIL, so the
scan runs several rows' medians in threads.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from jaxtyping import Bool, Float

SMALL = 32_768  # below this np.median is as fast
SAMPLE = 8_192  # entries in the bracketing sample


@functools.lru_cache(maxsize=16)
def _sample_positions(n: int) -> np.ndarray:
    """SAMPLE positions in [0, n), drawn once per length with a fixed seed."""
    return np.random.default_rng(n).integers(0, n, SAMPLE)


def exact_median(values: Float[torch.Tensor, "..."]) -> float:
    """The median of all entries of ``values`` (numpy's rule), as a Python float."""
    x = values.detach().reshape(-1).float().cpu().numpy()
    n = x.size
    if n == 0:
        raise ValueError("median of an empty tensor")
    if n < SMALL:
        return float(np.median(x))
    k_lo, k_hi = (n - 1) // 2, n // 2  # 0-based ranks of the middle value(s)
    sample = np.sort(x[_sample_positions(n)])
    margin = int(2 * SAMPLE ** 0.5) + 2
    lo, hi = sample[SAMPLE // 2 - margin], sample[SAMPLE // 2 + margin]
    below = int(np.count_nonzero(x < lo))
    band = x[(x >= lo) & (x <= hi)]
    if below <= k_lo and below + band.size > k_hi:
        i, j = k_lo - below, k_hi - below
        part = np.partition(band, [i, j])
        return float(part[i] if i == j else np.mean(part[[i, j]]))
    return float(np.median(x))


MEDIAN_METHODS = ("auto", "numpy", "sort", "histogram")


def median_method(device: torch.device, method: str = "auto") -> str:
    """The median algorithm ``"auto"`` means on ``device``: numpy on the CPU, the sync-free histogram select on
    CUDA, a sort elsewhere (Apple MPS: no int64 ``index_add_`` there).

    >>> median_method(torch.device("cpu")), median_method(torch.device("cpu"), "sort")
    ('numpy', 'sort')
    """
    if method not in MEDIAN_METHODS:
        raise ValueError(f"unknown median method {method!r}; choose one of {', '.join(MEDIAN_METHODS)}")
    if method != "auto":
        return method
    return {"cpu": "numpy", "cuda": "histogram"}.get(device.type, "sort")


def row_medians(a: Float[torch.Tensor, "batch pos d_model"], mask: Bool[torch.Tensor, "batch pos"], *,
                lengths: list[int] | None = None, method: str = "auto") -> Float[torch.Tensor, "batch"]:
    """The median |h| of each sequence over its real positions (numpy's rule), on ``a``'s device.

    >>> a = torch.tensor([[[1.0, 4.0], [2.0, 8.0]], [[3.0, 5.0], [0.0, 0.0]]])
    >>> mask = torch.tensor([[True, True], [True, False]])
    >>> [row_medians(a, mask, method=m).tolist() for m in ("numpy", "sort", "histogram")]
    [[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]]

    ``a`` holds non-negative values; ``mask`` [batch, pos] marks real tokens, right-padded (a corpus batch).
    ``lengths`` (real tokens per row, when the caller knows them) spares reading the mask back from the
    device. ``method`` (:func:`median_method`): ``"numpy"`` runs :func:`exact_median` per row on the host;
    ``"sort"`` sorts on the device, all rows at once when there is no padding; ``"histogram"`` is
    :func:`histogram_medians`, which never waits for the device (one histogram pass instead of three when ``a``
    is a 16-bit float). All three give the same float32 value, for ``a`` in float32 or a 16-bit float.
    """
    method = median_method(a.device, method)
    if lengths is None:
        lengths = mask.sum(1).tolist()
    width = a.shape[1]
    if method == "numpy":
        return torch.tensor([exact_median(a[i, :n] if bool(mask[i, :n].all()) else a[i][mask[i]])
                             for i, n in enumerate(lengths)], device=a.device)
    if method == "histogram":
        valid = None if min(lengths) == width else mask.to(a.device)[..., None].expand(a.shape).reshape(a.shape[0], -1)
        return histogram_medians(a.flatten(1), valid)
    if min(lengths) == width:
        return _middle(a.flatten(1).float())
    return torch.cat([_middle(a[i, :n].reshape(1, -1).float()) for i, n in enumerate(lengths)])


def _middle(x: Float[torch.Tensor, "rows n"]) -> Float[torch.Tensor, "rows"]:
    """Per row: the middle value, or the float32 mean of the two middle values for an even count.

    One sort per call (a radix sort on GPUs: measured faster there than two ``kthvalue`` selections).
    """
    n = x.shape[1]
    ranked = x.sort(dim=1).values
    lo = ranked[:, (n - 1) // 2]
    return lo if n % 2 else (lo + ranked[:, n // 2]) / 2


def histogram_medians(a: Float[torch.Tensor, "rows n"], valid: Bool[torch.Tensor, "rows n"] | None = None
                      ) -> Float[torch.Tensor, "rows"]:
    """Per row: the exact median of the non-negative entries of ``a`` where ``valid`` (numpy's rule on their
    float32 values), with no host synchronisation and no sort.

    >>> a = torch.tensor([[3.0, 1.0, 2.0, 10.0], [5.0, 0.0, 7.0, 1e30]])
    >>> histogram_medians(a).tolist(), histogram_medians(a, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()).tolist()
    ([2.5, 6.0], [2.0, 6.0])
    >>> histogram_medians(a[:, :3].bfloat16()).tolist()  # a 16-bit float: one pass over its own bit patterns
    [2.0, 5.0]

    For non-negative floats the bit pattern read as an integer is ordered like the value, so the middle ranks
    are found by a radix select in 16-bit passes: a histogram of the high 16 bits of the float32 pattern per
    row (``index_add_``: one pass over the entries, exact int32 counts), whose cumulative sum locates the
    bucket of each middle rank (``searchsorted``), then a histogram of the low 16 bits of the entries in that
    bucket. A 16-bit float (bfloat16, float16) is its own 16-bit pattern: one pass. The value is rebuilt from
    its bits, so it is exactly an entry of ``a``; an even count averages the two middle values in float32, as
    numpy does. Entries must be finite (NaN would sort last, as in numpy). Every shape and index is known in
    advance, so on a GPU the whole computation is queued without waiting for the device (:func:`row_medians`
    uses it there). Memory: one int32 key per entry.
    """
    rows, n = a.shape
    if rows >= 1 << 15 or n >= 1 << 31:
        raise ValueError(f"histogram_medians takes fewer than 2**15 rows of fewer than 2**31 entries, got {rows} x {n}")
    device, i32 = a.device, torch.int32  # keys, counts and ranks all fit in int32: half the traffic of int64
    weight = valid.to(i32) if valid is not None else torch.ones(1, dtype=i32, device=device).expand(rows, n)
    count = weight.sum(1, dtype=i32) if valid is not None else torch.full((rows,), n, dtype=i32, device=device)
    ranks = torch.stack([(count - 1).clamp_min(0) // 2, count // 2], dim=1)  # [rows, 2]: the middle ranks
    base = (torch.arange(rows, device=device, dtype=i32) << 16)[:, None]

    def select(keys: torch.Tensor, weights: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(16-bit key holding rank ``wanted`` [rows, 2], entries below that key) from a weighted histogram."""
        hist = torch.zeros(rows << 16, dtype=i32, device=device)
        hist.index_add_(0, (keys + base).reshape(-1), weights.reshape(-1))  # int16 or int32 keys: int32 indices
        cum = hist.view(rows, 1 << 16).cumsum(1, dtype=i32)
        key = torch.searchsorted(cum, wanted.to(i32), right=True).clamp_max((1 << 16) - 1)
        below = torch.where(key > 0, cum.gather(1, (key - 1).clamp_min(0)), 0)
        return key, below

    if a.dtype in (torch.float16, torch.bfloat16):
        key, _ = select(a.contiguous().view(torch.int16), weight, ranks)  # 15-bit magnitudes: sign bit 0
        values = key.to(torch.int16).view(a.dtype).float()
    else:
        bits = a.float().contiguous().view(i32)
        high_bits, low = bits >> 16, bits & 0xFFFF
        high, below = select(high_bits, weight, ranks)
        parts = []
        for j in range(2):  # the low bits of each middle rank, among the entries of its high bucket
            inside = (high_bits == high[:, j : j + 1]).to(i32) * weight
            key, _ = select(low, inside, (ranks[:, j] - below[:, j])[:, None])
            parts.append(key[:, 0])
        values = ((high << 16) | torch.stack(parts, dim=1)).to(torch.int32).view(torch.float32)
    return torch.where(ranks[:, 0] == ranks[:, 1], values[:, 0], (values[:, 0] + values[:, 1]) / 2)
