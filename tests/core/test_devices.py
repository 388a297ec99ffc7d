"""Device logic on the CPU: the auto pick, clear errors, inputs following the model, tensors made on the hooked
tensor's device, the out-of-memory back-off, the device-aware batch size, the device in provenance, the CLI flags.

CUDA and MPS are simulated with monkeypatching (this machine has neither); tests/gpu/ runs the real thing.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import mi_massive as mm
from mi_massive.core import devices, engine
from mi_massive.core.devices import (
    auto_batch_size, check_device, device_record, input_device, parse_device_map, pick_device, resolve_placement,
)
from mi_massive.core.engine import iter_corpus, run_capture
from mi_massive.core.hooks.ablation import per_row_head_ablation, replace_hook
from mi_massive.core.hooks.intervention import EntryEdit, set_entries
from mi_massive.errors import MiMassiveError, NumericalOverflowError

RESID = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def planted():
    return mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])


@pytest.fixture(scope="module")
def corpus(planted):
    return mm.load_corpus(planted, "builtin", n_samples=6, seq_len=24, seed=0, prepend_bos=True)


def _no_gpu(monkeypatch, *, cuda=False, mps=False, count=0):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


# ------------------------------------------------------------------ picking and checking a device
def test_auto_pick_prefers_cuda_then_mps_then_cpu(monkeypatch):
    _no_gpu(monkeypatch, cuda=True, mps=True, count=1)
    assert pick_device() == "cuda"
    assert resolve_placement().device == "cuda:0" and resolve_placement().how == "auto"
    _no_gpu(monkeypatch, cuda=False, mps=True)
    assert pick_device() == "mps" and resolve_placement().device == "mps"
    _no_gpu(monkeypatch)
    assert pick_device() == "cpu"
    assert resolve_placement().line() == "device: cpu (auto)"
    assert resolve_placement("cpu").line() == "device: cpu (requested)"


def test_unknown_or_absent_device_is_one_clear_line(monkeypatch):
    _no_gpu(monkeypatch)
    with pytest.raises(MiMassiveError, match=r"^unknown device 'gpu'; use cpu, cuda"):
        check_device("gpu")
    with pytest.raises(MiMassiveError, match=r"^unsupported device 'xla'"):
        check_device("xla")
    with pytest.raises(MiMassiveError, match=r"device 'cuda' requested but torch.cuda.is_available\(\) is False; "):
        check_device("cuda")
    with pytest.raises(MiMassiveError, match=r"device 'mps' requested but torch.backends.mps.is_available\(\) is False"):
        check_device("mps")
    _no_gpu(monkeypatch, cuda=True, count=2)
    assert check_device("cuda") == "cuda:0" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(MiMassiveError, match=r"device 'cuda:2' requested but only 2 CUDA device\(s\) are visible"):
        check_device("cuda:2")


def test_absent_cuda_message_names_the_build(monkeypatch):
    _no_gpu(monkeypatch)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(MiMassiveError, match="this torch build has no CUDA$"):
        check_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(MiMassiveError, match="this torch build has CUDA 12.8 but no GPU is visible$"):
        check_device("cuda:0")


def test_device_map_rules(monkeypatch, tmp_path):
    _no_gpu(monkeypatch)
    with pytest.raises(MiMassiveError, match="not both"):
        resolve_placement("cpu", device_map="auto")
    plan = resolve_placement(device_map="balanced")  # a string map without CUDA: whole model on the CPU
    assert (plan.device, plan.device_map, plan.sharded) == ("cpu", None, False)
    assert plan.note == "device_map 'balanced' without CUDA: the whole model is loaded on cpu"
    with pytest.raises(MiMassiveError, match=r"n_devices=2 requires CUDA"):
        resolve_placement(n_devices=2)
    with pytest.raises(MiMassiveError, match="n_devices must be a positive integer, got 0"):
        resolve_placement(n_devices=0)
    assert resolve_placement(n_devices=1).device == "cpu"  # one device is not sharding
    with pytest.raises(MiMassiveError, match=r"device 'cuda:0' requested"):
        resolve_placement(device_map={"model.embed_tokens": 0, "model.layers": 0})
    with pytest.raises(MiMassiveError, match="not a GPU index"):
        resolve_placement(device_map={"": "tpu"})
    file = tmp_path / "map.json"
    file.write_text(json.dumps({"model": "cpu", "lm_head": "cpu"}))
    assert parse_device_map(str(file)) == {"model": "cpu", "lm_head": "cpu"}
    with pytest.raises(MiMassiveError, match="not valid JSON"):
        parse_device_map("{model: cpu}")
    with pytest.raises(MiMassiveError, match="unknown device map 'fast'"):
        parse_device_map("fast")


def test_mixed_gpu_cpu_map_is_refused_by_transformerlens_rule(monkeypatch):
    _no_gpu(monkeypatch, cuda=True, count=1)
    with pytest.raises(MiMassiveError, match="mixes CPU/disk offload targets with a GPU target"):
        resolve_placement(device_map={"model.embed_tokens": 0, "model.layers": "cpu"})


def test_cpu_device_map_through_accelerate_equals_single_device(planted):
    """An all-CPU dict map goes through accelerate's dispatch_model; logits equal the plain load exactly."""
    names = ["model.embed_tokens", "model.rotary_emb", "model.layers.0", "model.layers.1", "model.layers.2",
             "model.layers.3", "model.norm", "lm_head"]
    layers = mm.load_toy("toy-llama").cfg.n_layers
    names = [n for n in names if not n.startswith("model.layers.") or int(n.rsplit(".", 1)[1]) < layers]
    sharded = mm.load_model("toy-llama", device_map={n: "cpu" for n in names})
    plain = mm.load_model("toy-llama", device="cpu")
    assert sharded.mi_massive_placement.sharded and sharded.cfg.n_devices == 1
    assert getattr(sharded.original_model, "hf_device_map", None) == {n: "cpu" for n in names}
    ids = torch.tensor([[1, 7, 9, 11, 13]])
    assert torch.equal(sharded(ids), plain(ids))


# ------------------------------------------------------------------ inputs follow the model
def test_inputs_go_to_the_embedding_device(monkeypatch):
    model = mm.load_toy("toy-llama")
    model.to("meta", print_details=False)
    assert input_device(model) == torch.device("meta")
    seen = []
    forward = model.forward

    def spy(ids, *args, **kwargs):
        seen.append(ids.device)
        return forward(ids, *args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    ids = torch.tensor([[1, 2, 3]])  # made on the CPU
    _, acts = run_capture(model, ids, [RESID], check=False, route="bridge")
    assert seen == [torch.device("meta")]
    assert acts[RESID].device.type == "meta"  # captures stay where they were made (not copied to the CPU)
    assert acts[RESID].dtype == torch.float32


def test_captures_are_not_moved_and_input_device_of_plain_modules(planted):
    assert input_device(torch.nn.Embedding(3, 2)) == torch.device("cpu")
    _, ids, mask = next(mm.text_corpus(planted, "The cat sat.", prepend_bos=True).batches(1))
    _, acts = run_capture(planted, ids, [RESID], mask=mask, route="bridge")
    assert acts[RESID].device == input_device(planted) == torch.device("cpu")
    assert round(float(acts[RESID][0, 0, 5])) == 3000


def test_hook_factories_make_tensors_on_the_hooked_tensors_device_and_dtype():
    """Means/donors/edits made on the CPU in float32/float64 are moved to the hooked tensor (meta, fp16 here)."""
    x = torch.empty(2, 4, 3, 5, device="meta", dtype=torch.float16)
    mean = torch.randn(2, 3, 5)
    for hook in (replace_hook("mean", mean=mean, components=[1]), replace_hook("zero", components=[0], positions=[1, 2]),
                 replace_hook("resample", donor=torch.randn(2, 6, 3, 5), positions=[0], components=[2])):
        out = hook(x)
        assert (out.device.type, out.dtype, out.shape) == ("meta", torch.float16, x.shape)
    z = torch.zeros(2, 4, 3, 5, dtype=torch.bfloat16)  # nonzero() has no meta kernel: check values on the CPU
    out = per_row_head_ablation(0, torch.tensor([1, -1]), "mean", mean=mean.double())[0][1](z)
    assert out.dtype == torch.bfloat16 and torch.equal(out[0, 0, 1], mean[0, 1].to(torch.bfloat16))
    assert torch.equal(out[0, 2, 1], mean[1, 1].to(torch.bfloat16)) and not out[1].any()
    edit = EntryEdit.from_entries([(0, 0, 1, 3.0)])
    h = torch.empty(1, 3, 4, device="meta", dtype=torch.bfloat16)
    assert (set_entries(h, edit).device.type, set_entries(h, edit).dtype) == ("meta", torch.bfloat16)


def test_reference_means_accumulate_in_float64_except_on_mps():
    assert devices.accumulation_dtype("cpu") is torch.float64
    assert devices.accumulation_dtype("cuda:0") is torch.float64
    assert devices.accumulation_dtype("mps") is torch.float32


# ------------------------------------------------------------------ memory: batch size and back-off
def test_auto_batch_size_uses_free_gpu_memory(monkeypatch, planted, corpus):
    assert auto_batch_size(planted, corpus) == corpus.auto_batch_size() == 32  # CPU: the token rule (capped at 32)
    cfg = planted.cfg
    per_seq = 4 * (24 * cfg.d_model * (cfg.n_layers + 4) + cfg.n_heads * 24 * 24)  # hand-derived
    monkeypatch.setattr(devices, "free_memory_bytes", lambda device: 2 * 50 * per_seq)  # half of free is used
    assert auto_batch_size(planted, corpus) == 50
    monkeypatch.setattr(devices, "free_memory_bytes", lambda device: 2 * 10 * per_seq)
    assert auto_batch_size(planted, corpus) == 32  # never below the token rule
    long = mm.load_corpus(planted, "builtin", n_samples=2, seq_len=512, seed=0, prepend_bos=True)
    per_long = 4 * (512 * cfg.d_model * (cfg.n_layers + 4) + cfg.n_heads * 512 * 512)
    monkeypatch.setattr(devices, "free_memory_bytes", lambda device: 2 * 40 * per_long + 7)
    assert long.auto_batch_size() == 4 and auto_batch_size(planted, long) == 40
    monkeypatch.setattr(devices, "free_memory_bytes", lambda device: 10 ** 15)
    assert auto_batch_size(planted, long) == 64  # capped


def _collect(model, corpus, **kwargs):
    sizes, rows = [], {}
    for indices, _ids, mask, _lg, acts in iter_corpus(model, corpus, [RESID], progress=False, **kwargs):
        sizes.append(len(indices))
        for j, i in enumerate(indices):
            rows[i] = acts[RESID][j, : int(mask[j].sum())]
    return sizes, rows


def test_out_of_memory_backs_off_and_equals_an_unfailed_run(monkeypatch, planted, corpus):
    ref_sizes, ref = _collect(planted, corpus, batch_size=8)
    real = engine._capture  # one batch's forward inside iter_corpus
    calls = []

    def flaky(model, ids, names, **kwargs):
        calls.append(ids.shape[0])
        if ids.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, ids, names, **kwargs)

    monkeypatch.setattr(engine, "_capture", flaky)
    sizes, got = _collect(planted, corpus, batch_size=8)
    assert ref_sizes == [6] and sizes == [3, 3] and calls == [6, 3, 3]  # 6 fails, halved to 3, kept at 3
    assert sorted(got) == list(range(6))
    for i in range(6):
        torch.testing.assert_close(got[i], ref[i], rtol=1e-5, atol=1e-4)
    assert round(float(got[0][0, 5])) == 3000


def test_out_of_memory_at_batch_one_is_a_clear_error(monkeypatch, planted, corpus):
    def never(model, ids, names, **kwargs):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")

    monkeypatch.setattr(engine, "_capture", never)
    with pytest.raises(MiMassiveError, match=r"^out of memory on cpu with a batch of 1 sequence of 24 tokens"):
        _collect(planted, corpus, batch_size=4)
    monkeypatch.setattr(engine, "_capture", lambda *a, **k: (_ for _ in ()).throw(ValueError("shape")))
    with pytest.raises(ValueError, match="shape"):  # other errors are not swallowed
        _collect(planted, corpus, batch_size=4)


def test_half_precision_overflow_is_detected_and_names_the_dtype():
    model = mm.load_toy("toy-llama", plant=[(1, 5, 1e5)], dtype="float16")  # 1e5 > float16 max 65,504
    _, ids, mask = next(mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True).batches(1))
    for route in ("bridge", None):
        with pytest.raises(NumericalOverflowError, match=r"float16 max is 65,504\): rerun with --dtype float32"):
            run_capture(model, ids, [RESID], mask=mask, route=route)


# ------------------------------------------------------------------ provenance and CLI
def test_device_in_provenance(monkeypatch, planted, corpus):
    from mi_massive.core.provenance import provenance

    rec = provenance(planted, corpus)["device"]
    assert {k: rec[k] for k in ("type", "device", "device_map", "n_devices", "torch", "cuda")} == {
        "type": "cpu", "device": "cpu", "device_map": None, "n_devices": 1, "torch": torch.__version__,
        "cuda": torch.version.cuda}
    assert rec["memory_bytes"] is None and isinstance(rec["name"], str)
    monkeypatch.setattr(devices, "input_device", lambda model: torch.device("cuda:0"))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: SimpleNamespace(name="NVIDIA Fake", total_memory=80 * 2 ** 30))
    fake = device_record(planted)
    assert (fake["type"], fake["device"], fake["name"], fake["memory_bytes"]) == (
        "cuda", "cuda:0", "NVIDIA Fake", 80 * 2 ** 30)


def test_cli_device_flags(tmp_path, monkeypatch):
    from mi_massive.cli import app

    _no_gpu(monkeypatch)
    runner = CliRunner()
    bad = runner.invoke(app, ["scan", "--model", "toy-llama", "--text", "The cat.", "--device", "cuda",
                              "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2
    errors = [line for line in bad.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: device 'cuda' requested but torch.cuda.is_available() is False; "
                      + ("this torch build has no CUDA" if torch.version.cuda is None else
                         f"this torch build has CUDA {torch.version.cuda} but no GPU is visible")]
    assert "loading" not in bad.output  # refused before anything is loaded
    ok = runner.invoke(app, ["scan", "--model", "toy-llama", "--text", "The cat sat.", "--device-map", "auto",
                             "--no-figures", "--out", str(tmp_path / "b")])
    assert ok.exit_code == 0, ok.output
    assert "note: device_map 'auto' without CUDA: the whole model is loaded on cpu" in ok.output
    assert "device: cpu (auto)" in ok.output
    saved = json.loads((tmp_path / "b" / "scan.json").read_text())
    assert saved["provenance"]["device"]["type"] == "cpu"
    many = runner.invoke(app, ["heads", "--model", "toy-llama", "--text", "The cat.", "--n-devices", "2",
                               "--out", str(tmp_path / "c")])
    assert many.exit_code == 2 and "error: n_devices=2 requires CUDA" in many.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_script_refuses_without_cuda_or_wheels(tmp_path):
    """scripts/gpu_check.sh: one 'error:' line and exit 2, before installing anything, when it cannot run."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(repo / "scripts" / "gpu_check.sh", copy / "scripts")
    run = lambda: subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=copy, capture_output=True, text=True,  # noqa: E731
                                 env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=120)
    no_wheels = run()
    assert no_wheels.returncode == 2 and no_wheels.stderr.startswith("error: no wheels in .whl/")
    (copy / ".whl").mkdir()
    (copy / ".whl" / "x-1.0-py3-none-any.whl").write_bytes(b"")
    no_cuda = run()
    assert no_cuda.returncode == 2 and no_cuda.stderr.strip() == "error: no CUDA device here (torch.cuda.is_available() is False)"
