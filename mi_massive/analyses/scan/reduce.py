"""One batch of captures reduced to the scan's statistics, reading the device back once per batch and device
(twice when some entry passes the absolute threshold).

>>> import mi_massive as mm, torch
>>> h = torch.full((1, 3, 4), 0.5); h[0, 0, 2] = -5000.0; h[0, 1, 1] = 150.0
>>> out = reduce_batch({"x": h}, ["x"], torch.ones(1, 3, dtype=torch.bool), lengths=[3], top_k=2)["x"]
>>> out.top_values.tolist(), out.median.tolist(), out.massive.values.tolist(), out.near.values.tolist()
([[5000.0, 150.0]], [0.5], [-5000.0], [150.0])

Why a module of its own: on a GPU every read of a device value on the host (``.tolist()``, ``.cpu()``,
``bool(t)``, ``int(t)``, ``nonzero``) waits for all queued work and leaves the GPU idle while Python
queues the next kernels. Reducing hook by hook with such reads cost ~15 waits per hook (~500 per batch
of a 32-layer model). Here every hook's fixed-size statistics are queued first with shapes known in advance
(:func:`~mi_massive.analyses.scan.median.histogram_medians` for the medians on CUDA, the padding taken
from the host's ``lengths``) and packed into one float32 and one int64 tensor per device: top-k, medians,
per-feature maxima, the count of entries above the absolute threshold and the inf/NaN test. Nothing before
that read waits for the device, so the host queues all of it while the forward still runs, and host work
passed as ``while_queued`` runs then too. Only the hooks that have candidates are then listed
(``torch.nonzero_static`` at their known count) and read in a second pair of copies; the relative test is
applied on the host to the medians already read. The numbers equal numpy's on the same values and the
rule of :func:`~mi_massive.analyses.scan.detect.detect` (``tests/analyses/test_scan_reduce.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD, Detection
from mi_massive.analyses.scan.median import row_medians
from mi_massive.core.engine import by_device, check_finite
from mi_massive.errors import MiMassiveError


@dataclass
class HookBatch:
    """One hook's statistics over one batch, on the host. |h| in the hook's units.

    top_values / top_positions / top_dims: [batch, k] the k largest |h| per sequence at real tokens, descending.
    median: [batch] median |h| over real (position, feature) entries; ratio: [batch] top-1 / median.
    dim_max: [features] max |h| per feature over the batch's real tokens.
    massive / near: entries with |h| > ``abs_threshold`` and (massive) > ``rel_threshold`` x their row's
    median, or (near) not; in row-major order (row, position, feature).
    """

    top_values: Float[np.ndarray, "batch k"]
    top_positions: Int[np.ndarray, "batch k"]
    top_dims: Int[np.ndarray, "batch k"]
    median: Float[np.ndarray, "batch"]
    ratio: Float[np.ndarray, "batch"]
    dim_max: Float[np.ndarray, "features"]
    massive: Detection
    near: Detection


def hook_features(name: str, h: torch.Tensor, batch_shape: tuple[int, int], shortest: int,
                  top_k: int) -> Float[torch.Tensor, "batch pos features"]:
    """A hook's activation as [batch, pos, features] (head axes flattened: q/k/v give ``head * d_head + i``).

    ``shortest`` is the fewest real tokens of a sequence in the batch (known on the host).
    """
    if not h.is_floating_point() or h.ndim < 3 or tuple(h.shape[:2]) != tuple(batch_shape):
        raise MiMassiveError(f"hook {name} gives {tuple(h.shape)} {str(h.dtype).replace('torch.', '')}, not "
                             f"per-token features [batch, pos, ...]; scan takes per-token hooks")
    h = h.flatten(2) if h.ndim > 3 else h
    if top_k > shortest * h.shape[-1]:
        raise MiMassiveError(f"top_k={top_k} exceeds the entries of {name} in the shortest sequence "
                             f"({shortest * h.shape[-1]})")
    return h


HALF_FLOATS = (torch.float16, torch.bfloat16)  # reduced in their own dtype: ranks, maxima and tests are exact there


def _candidates(a: Float[torch.Tensor, "batch pos features"], real: Bool[torch.Tensor, "batch pos 1"],
                abs_threshold: float, padded: bool) -> Bool[torch.Tensor, "batch pos features"]:
    """Entries above the absolute threshold (strict, as float32 compares: ``a > float32(abs_threshold)``) at real
    tokens. ``a`` may be float32 or a 16-bit float (:func:`threshold_in`)."""
    above = a > threshold_in(abs_threshold, a.dtype)
    return above & real if padded else above


def threshold_in(threshold: float, dtype: torch.dtype) -> float:
    """A threshold ``t`` >= 0 that a tensor of ``dtype`` compares with as float32 would: for a 16-bit float
    ``x``, ``x > result`` exactly when ``float32(x) > float32(t)``.

    >>> threshold_in(100.3, torch.bfloat16), threshold_in(100.0, torch.bfloat16), threshold_in(1e6, torch.float16)
    (100.0, 100.0, 65504.0)

    Why: PyTorch rounds a Python scalar to the tensor's dtype before comparing (``bf16(100.5) > 100.3`` is
    False, as 100.3 becomes 100.5), so the threshold is replaced by the largest value of ``dtype`` at or
    below it, which both sides represent exactly.
    """
    if dtype == torch.bfloat16:  # bfloat16 is the high half of float32: dropping the low half rounds down
        return float((np.array(threshold, np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32))
    if dtype == torch.float16:
        t32 = np.float32(threshold)
        with np.errstate(over="ignore"):
            low = np.float16(t32)  # to nearest: may go up (or to inf, which steps down to the largest float16)
        return float(np.nextafter(low, np.float16(-np.inf)) if np.float32(low) > t32 else low)
    return threshold


def _magnitudes(h: torch.Tensor) -> torch.Tensor:
    """|h| in float32, or in ``h``'s own dtype for a 16-bit float: every statistic of it (top-k, maxima, the
    median's bit patterns, the threshold test via :func:`threshold_in`) is exact there, and it is a third of
    the memory traffic of a float32 copy."""
    return h.abs() if h.dtype in HALF_FLOATS else h.abs().float()


def _listed(flags: Bool[torch.Tensor, "..."], count: int) -> Int[torch.Tensor, "n ndim"]:
    """The indices of the ``count`` True entries of ``flags`` (row-major), without a device read."""
    try:
        return torch.nonzero_static(flags, size=count)
    except (NotImplementedError, RuntimeError):  # a backend without it (MPS): the usual nonzero
        return flags.nonzero()


@torch.no_grad()
def reduce_batch(acts: Mapping[str, torch.Tensor], names: Sequence[str], mask: Bool[torch.Tensor, "batch pos"], *,
                 lengths: Sequence[int], top_k: int = 3, abs_threshold: float = ABS_THRESHOLD,
                 rel_threshold: float = REL_THRESHOLD, median: str = "auto", check: bool = True,
                 while_queued: Callable[[], None] | None = None) -> dict[str, HookBatch]:
    """Every hook's :class:`HookBatch` for one batch: {name: statistics}, in the order of ``names``.

    ``mask`` [batch, pos] marks real tokens (right-padded), ``lengths`` their count per row (host ints).
    ``median`` picks the median algorithm (:func:`~mi_massive.analyses.scan.median.row_medians`).
    Activations may be in any float dtype and on any device (a sharded model's hooks on their own GPU);
    statistics are computed where each activation lives, in float32, or in the activation's own dtype for
    bfloat16/float16 (exact there, see :func:`threshold_in`), and returned in float32.
    ``check``: inf/NaN at a real position raises :class:`~mi_massive.errors.NumericalOverflowError` naming the
    hook and dtype (:func:`~mi_massive.core.engine.check_finite`), tested within the first read, so a caller
    can capture with ``check=False`` and the forward is never waited for on its own.
    ``while_queued``: host work to run once everything is queued and before the first read (on a GPU it
    overlaps the device's work; the scan builds its token strings and provenance there).
    """
    batch_shape = tuple(mask.shape)
    shortest = min(lengths)
    padded = shortest < batch_shape[1]
    features: dict[str, torch.Tensor] = {}
    packed: dict[torch.device, tuple[list[str], list[torch.Tensor], list[torch.Tensor]]] = {}
    for name in names:  # 1. queue and pack every hook's fixed-size statistics (no device read)
        h = features[name] = hook_features(name, acts[name], batch_shape, shortest, top_k)
        a = _magnitudes(h)
        real = mask.to(a.device)[..., None]
        masked = a.masked_fill(~real, -1.0) if padded else a  # pads can never reach a top-k (|h| >= 0)
        top = masked.flatten(1).topk(top_k, dim=1)
        med = row_medians(a, mask, lengths=list(lengths), method=median)
        count = _candidates(a, real, abs_threshold, padded).sum()
        # inf/NaN at a real position: topk ranks NaN above inf above every number, pads are -1, so each row's
        # top-1 is finite exactly when its real entries are (no extra pass over the activations)
        finite = torch.isfinite(top.values[:, 0]).all().to(torch.int64) if check else torch.ones_like(count)
        hooks, floats, ints = packed.setdefault(a.device, ([], [], []))
        hooks.append(name)
        floats += [top.values.reshape(-1).float(), med, masked.amax(1).amax(0).clamp_min(0.0).float()]
        ints += [top.indices.reshape(-1), torch.stack([count, finite])]
    if while_queued is not None:
        while_queued()
    out: dict[str, HookBatch] = {}
    flagged: dict[str, int] = {}  # hooks with entries above the absolute threshold: how many
    for hooks, floats, ints in packed.values():  # 2. one float32 and one int64 copy per device
        float_host, int_host = torch.cat(floats).cpu().numpy(), torch.cat(ints).cpu().numpy()
        f_at = i_at = 0
        for name in hooks:
            batch, width = features[name].shape[0], features[name].shape[-1]
            top_values, med, dim_max = np.split(float_host[f_at: f_at + batch * (top_k + 1) + width],
                                                [batch * top_k, batch * (top_k + 1)])
            top_index, (count, finite) = int_host[i_at: i_at + batch * top_k], int_host[i_at + batch * top_k:][:2]
            f_at, i_at = f_at + batch * (top_k + 1) + width, i_at + batch * top_k + 2
            if not finite:  # raises for inf/NaN at a real position, naming the first
                check_finite(name, acts[name], mask)
            if count:
                flagged[name] = int(count)
            top_values = top_values.reshape(batch, top_k)
            with np.errstate(over="ignore"):  # a zero median gives an infinite ratio, as in torch
                ratio = top_values[:, 0] / np.maximum(med, np.finfo(np.float32).tiny)
            out[name] = HookBatch(top_values=top_values, top_positions=(top_index // width).reshape(batch, top_k),
                                  top_dims=(top_index % width).reshape(batch, top_k), median=med, ratio=ratio,
                                  dim_max=dim_max, massive=_no_entries(), near=_no_entries())
    for chunk in _chunks(features, flagged):  # 3. list the candidates at their known count, read, per chunk of hooks
        listed, values = [], []
        for name in chunk:  # the flags are recomputed: one flag tensor alive at a time
            h = features[name]
            flags = _candidates(_magnitudes(h), mask.to(h.device)[..., None], abs_threshold, padded)
            where = _listed(flags, flagged[name])
            listed.append(where.reshape(-1))
            values.append(h[where.unbind(1)].float())
        int_host, float_host = torch.cat(listed).cpu().numpy(), torch.cat(values).cpu().numpy()
        at = 0
        for name in chunk:
            n = flagged[name]
            rows, pos, dims = int_host[3 * at: 3 * (at + n)].reshape(n, 3).T
            vals, at = float_host[at: at + n], at + n
            rel = np.abs(vals) > np.float32(rel_threshold) * out[name].median[rows]  # float32, as torch computes it
            out[name].massive = Detection(rows[rel], pos[rel], dims[rel], vals[rel])
            out[name].near = Detection(rows[~rel], pos[~rel], dims[~rel], vals[~rel])
    return {name: out[name] for name in names}


def _no_entries() -> Detection:
    return Detection(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


MAX_ENTRIES_PER_READ = 1 << 21  # flagged entries listed on the device at once (~100 MB): thresholds of 0 flag all


def _chunks(features: Mapping[str, torch.Tensor], counts: Mapping[str, int]) -> list[list[str]]:
    """The flagged hooks (``counts``: name -> entries above the absolute threshold) of each device in groups
    whose entries fit :data:`MAX_ENTRIES_PER_READ` (a hook with more is a group of its own): one group per
    device in any ordinary scan, none when nothing is flagged."""
    chunks: list[list[str]] = []
    for group in by_device({name: features[name] for name in counts}).values():
        chunks.append([])
        total = 0
        for name in group:
            if chunks[-1] and total + counts[name] > MAX_ENTRIES_PER_READ:
                chunks.append([])
                total = 0
            chunks[-1].append(name)
            total += counts[name]
    return chunks
