"""On a real GPU: every analysis on CUDA equals its CPU result on the planted toy; fp16 overflow is detected on CUDA;
a model sharded with a device map over two GPUs equals the single-device run.

All tests are marked ``gpu`` and skipped (with the reason) when ``torch.cuda.is_available()`` is False:
``pytest -m gpu tests/gpu`` on a GPU machine.
"""

from __future__ import annotations

import math

import pytest
import torch

import mi_massive as mm
from mi_massive.errors import NumericalOverflowError

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.is_available() is False"),
]

PLANT = [(1, 5, 3000.0)]
RTOL, ATOL = 1e-3, 1e-4  # float32 GPU vs CPU kernels (TF32 off, see the fixture)


@pytest.fixture(scope="module", autouse=True)
def exact_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def pair():
    """(CPU model, CUDA model) of the same planted toy, and a corpus for each."""
    cpu = mm.load_toy("toy-llama", plant=PLANT, device="cpu")
    gpu = mm.load_toy("toy-llama", plant=PLANT, device="cuda")
    assert mm.model_info(gpu).device.startswith("cuda") and str(gpu.cfg.device).startswith("cuda")
    corpus = mm.load_corpus(cpu, "builtin", n_samples=4, seq_len=24, seed=0, prepend_bos=True)
    return cpu, gpu, corpus


def assert_close_json(got, want, where="$", atol=ATOL):
    """Records as dicts: equal keys, equal strings/ints, floats within RTOL/ATOL (provenance is skipped)."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys differ"
        for k in want:
            if k not in ("provenance", "created_utc") and not k.startswith("seconds"):
                assert_close_json(got[k], want[k], f"{where}.{k}", atol)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{where}: length"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close_json(g, w, f"{where}[{i}]", atol)
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), f"{where}: cuda {got} != cpu nan"
    elif isinstance(want, float) and math.isfinite(want):
        assert math.isclose(got, want, rel_tol=RTOL, abs_tol=atol), f"{where}: cuda {got} != cpu {want}"
    elif isinstance(want, torch.Tensor):
        torch.testing.assert_close(got.cpu(), want.cpu(), rtol=RTOL, atol=atol)
    else:
        assert got == want, f"{where}: cuda {got!r} != cpu {want!r}"


def both(pair, fn, atol=ATOL):
    cpu, gpu, corpus = pair
    want, got = fn(cpu, corpus), fn(gpu, corpus)
    assert got.provenance["device"]["type"] == "cuda" and want.provenance["device"]["type"] == "cpu"
    assert_close_json(got.to_dict(), want.to_dict(), atol=atol)
    return got


def test_scan_on_cuda_equals_cpu(pair):
    got = both(pair, lambda m, c: mm.scan(m, c, progress=False))
    assert got.massive  # the planted entry is found on CUDA too


def test_scan_of_padded_texts_on_cuda_equals_cpu(pair):
    """Right-padded batches: the CUDA medians (histogram select with a validity mask) equal numpy's on the CPU."""
    cpu, gpu, _ = pair
    texts = ["The cat sat on the mat.", "Hi.", "A much longer sentence about summer, winter and the sea."]
    corpus = mm.text_corpus(cpu, texts, prepend_bos=True)
    assert len(set(corpus.lengths)) == 3
    want, got = mm.scan(cpu, corpus, batch_size=3, progress=False), mm.scan(gpu, corpus, batch_size=3, progress=False)
    assert_close_json(got.to_dict(), want.to_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reduce_batch_on_cuda_is_exact_and_waits_twice(dtype):
    """The sync-free reduction on CUDA: the same float32 numbers as the CPU path, and 2 waits for the device per
    batch (each a float32 and an int64 copy): the fixed-size statistics, then the flagged entries."""
    from mi_massive.analyses.scan.reduce import reduce_batch
    from host_reads import CountHostReads

    g = torch.Generator().manual_seed(0)
    lengths = [40, 33, 17]
    mask = torch.arange(40)[None, :] < torch.tensor(lengths)[:, None]
    acts = {}
    for i in range(12):
        h = torch.randn(3, 40, 64, generator=g)
        h[:, 0, 7] = 3000.0 * (i + 1)
        h[1, 3, 9] = 150.0
        acts[f"h{i}"] = h.to(dtype)
    want = reduce_batch(acts, list(acts), mask, lengths=lengths)  # CPU: numpy medians
    cuda_acts = {k: v.cuda() for k, v in acts.items()}
    torch.cuda.synchronize()
    with CountHostReads() as counter:
        got = reduce_batch(cuda_acts, list(acts), mask.cuda(), lengths=lengths)
    assert counter.reads == ["cpu"] * 4
    for name in acts:
        for field in ("top_values", "top_positions", "top_dims", "median", "ratio", "dim_max"):
            assert getattr(got[name], field).tolist() == getattr(want[name], field).tolist(), (name, field)
        for kind in ("massive", "near"):
            a, b = getattr(got[name], kind), getattr(want[name], kind)
            assert a.rows.tolist() == b.rows.tolist() and a.values.tolist() == b.values.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reduce_batch_on_cuda_catches_inf_and_nan_at_real_positions(dtype):
    """CUDA's topk ranks NaN and inf first too: the top-1 based inf/NaN test finds a bad real entry, not a pad."""
    from mi_massive.analyses.scan.reduce import reduce_batch
    from mi_massive.errors import NumericalOverflowError

    lengths = [6, 4]
    mask = (torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]).cuda()
    for bad in (float("nan"), float("inf"), -float("inf")):
        h = torch.randn(2, 6, 4096, device="cuda").to(dtype)
        h[:, 0, 7] = 3000.0
        h[1, 5, 1] = bad  # a pad position of row 1
        assert reduce_batch({"x": h}, ["x"], mask, lengths=lengths)["x"].massive.rows.tolist() == [0, 1]
        h[1, 2, 100] = bad
        with pytest.raises(NumericalOverflowError, match=r"index \[1, 2, 100\]"):
            reduce_batch({"x": h}, ["x"], mask, lengths=lengths)


def test_heads_on_cuda_equals_cpu(pair):
    both(pair, lambda m, c: mm.heads(m, c, progress=False))


def test_ablate_on_cuda_equals_cpu(pair):
    # effects are differences of values near the planted 3000: CPU and GPU kernels round those at ~3e-7
    # relative, so the differences agree to ~1e-3 absolute (measured: 0.03223 vs 0.03296), not to ATOL
    scale = 3e-6 * PLANT[0][2]
    both(pair, lambda m, c: mm.ablate(m, c, heads=[(1, 0), (1, 2)], mlps=[1], n_null=20, progress=False), atol=scale)
    both(pair, lambda m, c: mm.ablate(m, c, heads=[(1, 0)], mode="mean", n_null=0, progress=False), atol=scale)


def test_attribute_on_cuda_equals_cpu(pair):
    cpu, gpu, corpus = pair
    want, got = mm.attribute(cpu, corpus, 1, 0, 5), mm.attribute(gpu, corpus, 1, 0, 5)
    w, g = want.to_dict(), got.to_dict()
    big = [r for r in w["contributions"] if abs(r.get("mean", r.get("value", 1.0)) or 0) > 1e-3]
    assert_close_json(g["contributions"][: len(big)], w["contributions"][: len(big)])  # tiny ties may reorder


def test_intervene_on_cuda_equals_cpu(pair):
    cpu, gpu, _ = pair
    evals, calib = mm.split_corpus(mm.load_corpus(cpu, "builtin", n_samples=8, seq_len=24, seed=0,
                                                  prepend_bos=True), 4)
    want = mm.intervene(cpu, evals, calib, n_control=2, n_boot=50)
    got = mm.intervene(gpu, evals, calib, n_control=2, n_boot=50)
    assert_close_json(got.to_dict(), want.to_dict())


def test_patch_on_cuda_equals_cpu(pair):
    cpu, gpu, _ = pair
    want = mm.patch(cpu, "abcde", "abxde", metric="entry:2:0:5", prepend_bos=True, progress=False)
    got = mm.patch(gpu, "abcde", "abxde", metric="entry:2:0:5", prepend_bos=True, progress=False)
    assert_close_json(got.to_dict(), want.to_dict())


def test_head_sweep_on_cuda_equals_cpu(pair):
    from mi_massive.analyses.sweep.run import head_sweep

    cpu, gpu, corpus = pair
    entries = [(1, 0, 5), (2, 1, 5)]
    want = head_sweep(cpu, corpus, entries, loss=True, progress=False)
    got = head_sweep(gpu, corpus, entries, loss=True, progress=False)
    torch.testing.assert_close(torch.tensor(got.values), torch.tensor(want.values), rtol=RTOL, atol=ATOL)


def test_fp16_overflow_detected_on_cuda():
    model = mm.load_toy("toy-llama", plant=[(1, 5, 1e5)], dtype="float16", device="cuda")
    _, ids, mask = next(mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True).batches(1))
    from mi_massive.core.engine import run_capture

    with pytest.raises(NumericalOverflowError, match="float16 max is 65,504"):
        run_capture(model, ids, ["blocks.1.hook_resid_post"], mask=mask)


def test_cli_picks_cuda_and_records_it(tmp_path):
    import json

    from typer.testing import CliRunner

    from mi_massive.cli import app

    result = CliRunner().invoke(app, ["scan", "--model", "toy-llama", "--text", "The cat sat.", "--no-figures",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "device: cuda:0 (auto)" in result.output
    device = json.loads((tmp_path / "scan.json").read_text())["provenance"]["device"]
    assert device["type"] == "cuda" and device["memory_bytes"] > 0 and device["cuda"] == torch.version.cuda


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs at least 2 CUDA devices")
def test_device_map_over_two_gpus_equals_single_device():
    layers = mm.load_toy("toy-llama").cfg.n_layers
    half = layers // 2
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "lm_head": 1,
                  **{f"model.layers.{i}": 0 if i < half else 1 for i in range(layers)}}
    sharded = mm.load_model("toy-llama", device_map=device_map)
    single = mm.load_model("toy-llama", device="cuda:0")
    assert sharded.cfg.n_devices == 2
    corpus = mm.load_corpus(single, "builtin", n_samples=4, seq_len=24, seed=0, prepend_bos=True)
    a, b = mm.scan(sharded, corpus, progress=False), mm.scan(single, corpus, progress=False)
    assert a.provenance["device"]["n_devices"] == 2
    assert_close_json(a.to_dict(), b.to_dict())
    n = mm.load_model("toy-llama", n_devices=2)
    assert n.cfg.n_devices == 2
