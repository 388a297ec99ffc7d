"""GPUs per unit of work (mi_massive.core.sizes.gpus_needed): the study and the sharded sweep / patch ask Ray for
what the model needs -- never 0 on a CUDA machine by accident, since Ray hides CUDA from a 0-GPU task."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import mi_massive.core.sizes as sizes
from mi_massive.core.sizes import estimate_params, gpus_needed
from mi_massive.errors import MiMassiveError

GIB = 2**30


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA machine as torch reports it: ``gpu(80)`` makes device 0 an 80 GiB GPU."""
    def make(gib: float) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda index: SimpleNamespace(total_memory=int(gib * GIB), index=index))
    return make


@pytest.fixture(scope="module")
def llama_70b(tmp_path_factory):
    """A Hugging Face directory with Llama-2-70B's config only (sized on the meta device: 68.98e9 parameters)."""
    from transformers import LlamaConfig

    path = tmp_path_factory.mktemp("llama-70b")
    LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=32000).save_pretrained(path)
    return str(path)


def test_without_cuda_or_on_a_non_cuda_device_a_unit_asks_for_no_gpu(monkeypatch, gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpus_needed("random:llama-2-7b", "bfloat16") == 0.0
    assert gpus_needed("random:llama-2-7b", "bfloat16", gpu_memory_gib=80) == 0.0
    gpu(80)
    assert gpus_needed("random:llama-2-7b", "bfloat16", device="cpu") == 0.0
    assert gpus_needed("random:llama-2-7b", "bfloat16", device="mps") == 0.0


def test_gpus_from_the_weights_and_this_gpus_memory(gpu, llama_70b):
    assert round(estimate_params(llama_70b) / 1e9, 2) == 68.98
    gpu(80)  # 1.2 x 6.74e9 x 2 B = 16.2 GB; 1.2 x 68.98e9 x 2 B = 165.5 GB = 1.93 x 80 GiB
    assert gpus_needed("random:llama-2-7b", "bfloat16") == 1.0
    assert gpus_needed("random:llama-2-7b", "bfloat16", device="cuda:0") == 1.0
    assert gpus_needed(llama_70b, "bfloat16") == 2.0
    assert gpus_needed(llama_70b, "float32") == 4.0  # 3.85 x 80 GiB
    gpu(40)  # the memory of device 0 counts when none is given ...
    assert gpus_needed(llama_70b, "bfloat16") == 4.0
    assert gpus_needed(llama_70b, "bfloat16", gpu_memory_gib=80) == 2.0  # ... a given one wins (the study's)


def test_an_explicit_count_wins_and_bad_input_is_one_line(gpu, monkeypatch):
    gpu(80)
    assert gpus_needed("random:llama-2-7b", "bfloat16", num_gpus=0) == 0.0  # 0 still means 0
    assert gpus_needed("random:llama-2-7b", "bfloat16", device="cpu", num_gpus=3) == 3.0
    with pytest.raises(MiMassiveError, match="--gpus-per-task must be a non-negative number, got -1"):
        gpus_needed("toy-llama", num_gpus=-1)
    with pytest.raises(MiMassiveError, match="GPU memory must be a positive number of GiB"):
        gpus_needed("toy-llama", gpu_memory_gib=0)
    with pytest.raises(MiMassiveError, match="unknown dtype 'fp8'"):
        gpus_needed("toy-llama", "fp8")
    monkeypatch.setattr(sizes, "estimate_params", lambda spec: None)
    assert gpus_needed("no/such-model", "bfloat16") == 1.0  # cannot be sized: one GPU


def test_the_study_sizes_its_units_with_its_own_gpu_memory(gpu, llama_70b, tmp_path, monkeypatch):
    import importlib

    study_run = importlib.import_module("mi_massive.study.run")  # mi_massive.study is also the function

    gpu(40)  # this machine's GPU; the study's units get gpu_memory_gib (default 80)

    def stop(settings, gpus):
        raise MiMassiveError(f"planned {gpus[llama_70b]}")

    monkeypatch.setattr(study_run, "plan_units", stop)
    with pytest.raises(MiMassiveError, match="planned 2.0"):
        study_run.study([llama_70b], tmp_path, dtype="bfloat16", engine="local", progress=False)
    with pytest.raises(MiMassiveError, match="planned 4.0"):
        study_run.study([llama_70b], tmp_path, dtype="bfloat16", gpu_memory_gib=40, engine="local", progress=False)
    with pytest.raises(MiMassiveError, match="planned 0.0"):
        study_run.study([llama_70b], tmp_path, dtype="bfloat16", device="cpu", engine="local", progress=False)


# ------------------------------------------------------------------ the CLI: sweep / patch --shards
SWEEP = ["sweep", "--model", "toy-llama", "--corpus", "builtin", "--n-samples", "2", "--seq-len", "8",
         "--layer", "1", "--dim", "3", "--no-mlps", "--no-figures"]
PATCH = ["patch", "--model", "toy-llama", "--clean", "abcd", "--corrupted", "abxd"]


@pytest.mark.parametrize("command", [SWEEP, PATCH], ids=["sweep", "patch"])
def test_sharded_cli_units_ask_for_the_computed_gpus(command, tmp_path, monkeypatch):
    """Without --gpus-per-task every shard asks for what the model needs (here 3: the "GPU" holds 1/2.5 of 1.2 x
    the toy's float32 weights); --gpus-per-task 0 stays 0, 2 is 2; --device cpu asks for 0."""
    from typer.testing import CliRunner

    import mi_massive.core.units as units
    from mi_massive.cli import app

    toy_gib = 1.2 * estimate_params("toy-llama") * 4 / GIB
    # only the sizing sees a GPU: the model itself loads on the CPU of this machine
    monkeypatch.setattr(sizes, "cuda_memory_gib", lambda: toy_gib / 2.5)
    seen: list[list[tuple[str, float]]] = []

    def runner(todo, store, **_kwargs):
        seen.append([(u.id, u.num_gpus) for u in todo])
        raise MiMassiveError("units reached")

    monkeypatch.setattr(units, "run_units", runner)
    base = command + ["--shards", "2", "--engine", "local", "--out", str(tmp_path)]
    for extra, want in [([], 3.0), (["--gpus-per-task", "0"], 0.0), (["--gpus-per-task", "2"], 2.0),
                        (["--device", "cpu"], 0.0)]:
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 2 and "error: units reached" in result.output, result.output
        assert seen.pop() == [("shard-000", want), ("shard-001", want)], extra
    bad = CliRunner().invoke(app, base + ["--gpus-per-task", "-1"])
    assert bad.exit_code == 2 and "error: --gpus-per-task must be a non-negative number, got -1.0" in bad.output
    assert not seen  # refused before any unit


def test_unit_model_shards_over_the_gpus_of_its_unit(monkeypatch):
    """A unit (study, sweep shard, patch shard) given several GPUs loads its model over all of them; the last
    model is kept for the next unit of the same spec unless $MI_MASSIVE_KEEP_MODEL=0 (Ray tasks)."""
    import torch

    import mi_massive.core.loading as loading
    from mi_massive.core import units

    calls = []
    monkeypatch.setattr(loading, "load_model", lambda spec, **kw: calls.append((spec, kw)) or object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(units, "_LAST_MODEL", {})
    for n_gpus, device, want in [(2, None, 2), (2, "cuda", 2), (1, None, None), (2, "cpu", None), (3, "cuda:1", None)]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda n=n_gpus: n)
        units._LAST_MODEL.clear()
        units.unit_model("random:llama-2-7b", "bfloat16", device)
        placed = {"n_devices": want} if want else {"device": device}  # load_model refuses a device with n_devices
        assert calls[-1] == ("random:llama-2-7b", {"dtype": "bfloat16", **placed})
    first = units.unit_model("toy-llama", "float32", None)
    assert units.unit_model("toy-llama", "float32", None) is first and len(calls) == 6
    monkeypatch.setenv("MI_MASSIVE_KEEP_MODEL", "0")
    units._LAST_MODEL.clear()
    units.unit_model("toy-llama", "float32", None), units.unit_model("toy-llama", "float32", None)
    assert len(calls) == 8


def test_sharded_runs_do_not_keep_a_model_after_they_return(monkeypatch, tmp_path):
    """The in-process shards of one run share a load; run_layer_shards drops it before returning."""
    from mi_massive.core import units

    monkeypatch.setattr(units, "_LAST_MODEL", {"key": "toy-llama|float32|cpu", "model": object()})
    monkeypatch.setattr(units, "run_units", lambda *a, **k: units.UnitsReport(engine="local"))
    monkeypatch.setattr(units.UnitStore, "path", lambda self, uid: tmp_path / uid)
    units.run_layer_shards(units.UnitStore(tmp_path), "x:y", "sweep", n_layers=2, shards=2,
                           kwargs={"model": "toy-llama", "dtype": "float32", "device": "cpu"}, engine="local")
    assert units._LAST_MODEL == {}
