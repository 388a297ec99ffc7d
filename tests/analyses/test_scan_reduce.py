"""The scan's batch reduction (``analyses/scan/reduce.py``) and its sync-free median, against numpy.

Every number is compared with numpy on the same float32 values (``np.median``, sorting, thresholds applied
by hand); the device-read counts are taken with a ``TorchFunctionMode`` that sees every tensor method call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from host_reads import CountHostReads

from mi_massive.analyses.scan.median import histogram_medians, row_medians
from mi_massive.analyses.scan.reduce import reduce_batch
from mi_massive.core.engine import suspects
from mi_massive.errors import MiMassiveError

METHODS = ("numpy", "sort", "histogram")


def _rows(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative rows of mixed scale with zeros, ties and a validity mask (first entry always valid)."""
    g = torch.Generator().manual_seed(seed)
    rows, n = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 4000, (1,), generator=g))
    x = (torch.randn(rows, n, generator=g) * 10.0 ** int(torch.randint(-4, 5, (1,), generator=g))).abs()
    if seed % 3 == 0:
        x = x.bfloat16().float()  # many ties, low 16 bits zero
    if seed % 4 == 0:
        x[:, ::3] = 0.0
    if seed % 7 == 0:
        x[:, 1::5] = 1e30  # far outliers: a wide histogram
    valid = torch.rand(rows, n, generator=g) > 0.3
    valid[:, 0] = True
    return x, valid


@pytest.mark.parametrize("seed", range(40))
def test_histogram_median_equals_numpy(seed):
    x, valid = _rows(seed)
    want_all = np.median(x.numpy(), axis=1).astype(np.float32)
    assert histogram_medians(x).numpy().tolist() == want_all.tolist()
    want = [np.float32(np.median(x[i][valid[i]].numpy())) for i in range(len(x))]
    assert histogram_medians(x, valid).numpy().tolist() == [float(w) for w in want]
    if seed % 3 == 0:  # bfloat16 values: the one-pass select over the bfloat16 bits gives the same values
        assert histogram_medians(x.bfloat16(), valid).numpy().tolist() == [float(w) for w in want]
    if x.max() < 60000:  # float16 too, on values converted to it
        h = x.half()
        want16 = [np.float32(np.median(h[i][valid[i]].float().numpy())) for i in range(len(h))]
        assert histogram_medians(h, valid).numpy().tolist() == [float(w) for w in want16]


def test_histogram_median_of_one_value_and_all_equal():
    assert histogram_medians(torch.tensor([[7.5]])).tolist() == [7.5]
    assert histogram_medians(torch.full((2, 1001), 3.0)).tolist() == [3.0, 3.0]
    assert histogram_medians(torch.zeros(1, 4)).tolist() == [0.0]


def _padded_batch(seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 9, 16, generator=g)
    h[0, 0, 5] = 4000.0  # massive in row 0 (median ~0.7)
    h[1, 0, 5] = -3500.0
    h[1, 2, 7] = 150.0  # near: above 100, below 1000 x median
    h[2, 6, 3] = 9999.0  # at a pad position of row 2: never flagged, never a top-k
    lengths = [9, 7, 5]
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    return h.to(dtype), mask, lengths


@pytest.mark.parametrize("method", METHODS)
def test_row_medians_methods_agree_with_numpy(method):
    h, mask, lengths = _padded_batch()
    a = h.abs()
    want = [float(np.median(a[i, :n].numpy())) for i, n in enumerate(lengths)]
    assert row_medians(a, mask, lengths=lengths, method=method).tolist() == want
    assert row_medians(a, mask, method=method).tolist() == want  # lengths read from the mask


def _numpy_reference(h: torch.Tensor, lengths: list[int], k: int, abs_t: float, rel_t: float) -> dict:
    a = np.abs(h.float().numpy())
    features = a.shape[-1]
    out = {"top_values": [], "top_positions": [], "top_dims": [], "median": [], "massive": [], "near": []}
    for i, n in enumerate(lengths):
        real = a[i, :n].reshape(-1)
        order = np.argsort(-real, kind="stable")[:k]
        out["top_values"].append(real[order].tolist())
        out["top_positions"].append((order // features).tolist())
        out["top_dims"].append((order % features).tolist())
        med = np.float32(np.median(real))
        out["median"].append(float(med))
        for p, d in zip(*np.nonzero(a[i, :n] > abs_t)):
            value = float(h[i, p, d].float())
            kind = "massive" if abs(value) > np.float32(rel_t) * med else "near"
            out[kind].append((i, int(p), int(d), value))
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reduce_batch_equals_numpy(method, dtype):
    h, mask, lengths = _padded_batch(dtype=dtype)
    got = reduce_batch({"x": h}, ["x"], mask, lengths=lengths, top_k=3, median=method)["x"]
    want = _numpy_reference(h, lengths, 3, 100.0, 1000.0)
    assert got.top_values.tolist() == want["top_values"]
    assert got.top_positions.tolist() == want["top_positions"]
    assert got.top_dims.tolist() == want["top_dims"]
    assert got.median.tolist() == want["median"]
    assert got.ratio.tolist() == [np.float32(t[0]) / np.float32(m) for t, m in zip(want["top_values"], want["median"])]
    for kind in ("massive", "near"):
        e = getattr(got, kind)
        assert list(zip(e.rows.tolist(), e.positions.tolist(), e.dims.tolist(), e.values.tolist())) == want[kind]
    assert [r[:3] for r in want["massive"]] == [(0, 0, 5), (1, 0, 5)] and [r[:3] for r in want["near"]] == [(1, 2, 7)]
    real_max = np.stack([np.abs(h[i, :n].float().numpy()).max(0) for i, n in enumerate(lengths)]).max(0)
    assert got.dim_max.tolist() == real_max.tolist()


def test_reduce_batch_strict_thresholds_and_head_axes():
    h = torch.full((1, 2, 2, 3), 0.5)  # [batch, pos, head, d_head]: features are head * d_head + i
    h[0, 1, 1, 2] = 100.0  # exactly the absolute threshold: not flagged (strict >)
    h[0, 0, 1, 0] = 500.0  # 500 == 1000 x median 0.5: near, not massive (strict >)
    got = reduce_batch({"q": h}, ["q"], torch.ones(1, 2, dtype=torch.bool), lengths=[2], top_k=1)["q"]
    assert got.massive.values.tolist() == [] and got.near.dims.tolist() == [3] and got.near.values.tolist() == [500.0]
    assert got.dim_max.shape == (6,)


def test_reduce_batch_rejects_non_token_hooks_and_large_top_k():
    mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(MiMassiveError, match="per-token features"):
        reduce_batch({"p": torch.zeros(1, 4, 2, 2)}, ["p"], mask, lengths=[2])
    with pytest.raises(MiMassiveError, match="top_k=5 exceeds"):
        reduce_batch({"x": torch.zeros(1, 2, 2)}, ["x"], mask, lengths=[2], top_k=5)


@pytest.mark.parametrize("n_hooks", [1, 30])
def test_reduce_batch_waits_for_the_device_once_or_twice_per_batch(n_hooks):
    """The sync-free path (histogram medians, as on CUDA): one float32 + one int64 copy of every hook's fixed-size
    statistics; a second pair only when some entry passes the absolute threshold."""
    h, mask, lengths = _padded_batch()
    acts = {f"h{i}": h * (i + 1) for i in range(n_hooks)}
    with CountHostReads() as counter:
        out = reduce_batch(acts, list(acts), mask, lengths=lengths, median="histogram")
    assert counter.reads == ["cpu"] * 4
    assert len(out[f"h{n_hooks - 1}"].massive.values) == 2
    with CountHostReads() as counter:
        quiet = reduce_batch(acts, list(acts), mask, lengths=lengths, median="histogram", abs_threshold=1e9)
    assert counter.reads == ["cpu"] * 2
    assert quiet["h0"].median.tolist() == out["h0"].median.tolist() and len(quiet["h0"].near.values) == 0


def test_only_hooks_with_candidates_are_listed():
    """Hooks with no entry above the absolute threshold queue no listing work after the first read."""
    from torch.overrides import TorchFunctionMode

    h, mask, lengths = _padded_batch()
    acts = {f"h{i}": h / 1e6 for i in range(10)}  # nothing above 100
    acts["h4"] = h  # 3 entries above 100
    listed = []

    class Listing(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("nonzero_static", "nonzero"):
                listed.append(args[0].shape)
            return func(*args, **(kwargs or {}))

    with Listing():
        out = reduce_batch(acts, list(acts), mask, lengths=lengths, median="histogram")
    assert listed == [h.shape]
    assert [len(out[n].massive.values) + len(out[n].near.values) for n in acts] == [0] * 4 + [3] + [0] * 5


def test_finite_check_reads_once_and_names_the_bad_tensors():
    tensors = {f"t{i}": torch.ones(2, 3, dtype=torch.bfloat16) * 60000 for i in range(20)}  # bf16 sums stay finite
    tensors["t7"] = tensors["t7"].clone()
    tensors["t7"][1, 2] = float("nan")
    with CountHostReads() as counter:
        assert suspects(tensors) == ["t7"]
    assert counter.reads == ["tolist"]


def test_reduce_batch_checks_inf_and_nan_at_real_positions_only():
    from mi_massive.errors import NumericalOverflowError

    h, mask, lengths = _padded_batch(dtype=torch.float16)
    h[2, 7, 0] = float("inf")  # a pad position of row 2 (5 real tokens): ignored
    got = reduce_batch({"x": h}, ["x"], mask, lengths=lengths)["x"]
    assert got.massive.rows.tolist() == [0, 1]
    h[1, 1, 3] = float("nan")
    with pytest.raises(NumericalOverflowError, match=r"inf/NaN in x at index \[1, 1, 3\].*float16 max is 65,504"):
        reduce_batch({"x": h}, ["x"], mask, lengths=lengths)
    reduce_batch({"x": h}, ["x"], mask, lengths=lengths, check=False)  # the caller's choice


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_any_non_finite_real_entry_is_caught_beside_large_values(dtype, bad):
    """The inf/NaN test rides on each row's top-1 (NaN and inf rank first): one bad entry among massive ones,
    in any row and hook, is found; the same entry at a pad position is not."""
    from mi_massive.errors import NumericalOverflowError

    h, mask, lengths = _padded_batch(dtype=dtype)
    acts = {"a": h.clone(), "b": h.clone()}
    acts["b"][2, 3, 9] = bad  # row 2 has 5 real tokens: position 3 is real
    with pytest.raises(NumericalOverflowError, match=r"inf/NaN in b at index \[2, 3, 9\]"):
        reduce_batch(acts, ["a", "b"], mask, lengths=lengths)
    acts["b"][2, 3, 9] = 0.0
    acts["b"][2, 6, 9] = bad  # a pad position
    assert reduce_batch(acts, ["a", "b"], mask, lengths=lengths)["b"].massive.rows.tolist() == [0, 1]


def test_host_work_runs_after_queueing_and_before_the_first_read():
    h, mask, lengths = _padded_batch()
    events: list[str] = []

    class Recorder(CountHostReads):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("tolist", "cpu"):
                events.append("read")
            return super().__torch_function__(func, types, args, kwargs)

    with Recorder():
        reduce_batch({"x": h, "y": 2 * h}, ["x", "y"], mask, lengths=lengths, median="histogram",
                     while_queued=lambda: events.append("host work"))
    assert events == ["host work", "read", "read", "read", "read"]


def test_many_flagged_entries_are_read_in_bounded_chunks(monkeypatch):
    """Thresholds of 0 flag every entry: they are listed and read a few hooks at a time, with the same result."""
    import mi_massive.analyses.scan.reduce as reduce

    h, mask, lengths = _padded_batch()
    acts = {f"h{i}": h * (i + 1) for i in range(5)}
    whole = reduce_batch(acts, list(acts), mask, lengths=lengths, abs_threshold=0, rel_threshold=0, median="histogram")
    per_hook = sum(lengths) * h.shape[-1]  # every real entry is flagged (none is exactly 0)
    assert [len(whole[n].massive.values) for n in acts] == [per_hook] * 5
    monkeypatch.setattr(reduce, "MAX_ENTRIES_PER_READ", 2 * per_hook)
    with CountHostReads() as counter:
        chunked = reduce_batch(acts, list(acts), mask, lengths=lengths, abs_threshold=0, rel_threshold=0,
                               median="histogram")
    assert counter.reads == ["cpu"] * 8  # the fixed-size statistics, then 3 chunks (2 + 2 + 1 hooks), 2 copies each
    for name in acts:
        assert chunked[name].massive.values.tolist() == whole[name].massive.values.tolist()
        assert chunked[name].massive.dims.tolist() == whole[name].massive.dims.tolist()
        assert chunked[name].median.tolist() == whole[name].median.tolist()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_threshold_compares_like_float32(dtype):
    """16-bit activations are tested in their own dtype: for every non-negative finite value of the dtype, the
    adjusted threshold gives exactly the float32 comparison (PyTorch would round a plain scalar to the dtype)."""
    from mi_massive.analyses.scan.reduce import threshold_in

    values = torch.arange(0, 1 << 15, dtype=torch.int32).to(torch.int16).view(dtype)
    values = values[torch.isfinite(values)]
    for t in [0.0, 1e-8, 0.3, 100.0, 100.3, 1000.7, 3.1e4, 65504.0, 7e4, 1e38, 3.4e38]:
        assert torch.equal(values > threshold_in(t, dtype), values.float() > np.float32(t)), t
    h = torch.full((1, 2, 3), 0.25, dtype=dtype)
    h[0, 0, 1] = 100.5  # bfloat16(100.3) would be 100.5: a plain comparison would miss it
    h[0, 1, 2] = 100.25 if dtype == torch.float16 else 100.0
    got = reduce_batch({"x": h}, ["x"], torch.ones(1, 2, dtype=torch.bool), lengths=[2], abs_threshold=100.3)["x"]
    want = _numpy_reference(h, [2], 3, 100.3, 1000.0)
    assert [(r, p, d) for r, p, d, _ in want["near"]] == [(0, 0, 1)]
    assert list(zip(got.near.rows.tolist(), got.near.positions.tolist(), got.near.dims.tolist())) == [(0, 0, 1)]
