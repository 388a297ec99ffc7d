"""Checkpoints and saved variants under attack or damage (issue 13, "nothing lost, nothing corrupted, nothing
executed"): planted pickles never run, damaged files are one-line errors, a directory is never resumed or
overwritten by another variant, and two same-seed comparisons write the same JSON apart from times."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mi_massive.cli import app
from mi_massive.core.loading import load_model
from mi_massive.errors import MiMassiveError

runner = CliRunner()


class Planted:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, i.e. runs code that leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture(scope="module")
def common(tmp_path_factory):
    from mi_massive.core.corpus import builtin_text

    text = tmp_path_factory.mktemp("data") / "corpus.txt"
    text.write_text(builtin_text()[:30000], encoding="utf-8")
    return ["--base", "toy-llama", "--data", str(text), "--steps", "2", "--batch-size", "2", "--seq-len", "16",
            "--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--n-kv-heads", "1", "--n-eval", "2", "--warmup", "1"]


def train(out: Path, variant: str, common: list[str], *extra: str):
    return runner.invoke(app, ["train-variant", "--variant", variant, *common, *extra, "-o", str(out)])


@pytest.fixture(scope="module")
def saved(tmp_path_factory, common):
    """A finished kv_bias variant (read-only use: copy it before damaging it)."""
    out = tmp_path_factory.mktemp("variant") / "kv"
    res = train(out, "kv_bias", common)
    assert res.exit_code == 0, res.output
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    return dest


# ------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_planted_pickle_in_a_checkpoint_never_runs(tmp_path, common, form):
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "out" / "checkpoint" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    payload = {"model": Planted(marker), "optimizer": {}, "log": {"config": {}}}
    if form == "zip":
        torch.save(payload, ckpt)  # torch's own format, a pickle inside a zip
    else:
        ckpt.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    res = train(tmp_path / "out", "baseline", common)
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert "objects other than tensors" in line and "could run code" in line and str(ckpt) in line
    assert not marker.exists()  # the payload never ran
    with pytest.raises(MiMassiveError, match="could run code"):
        from mi_massive.training.loop import read_checkpoint

        read_checkpoint(ckpt)
    assert not marker.exists()


def test_truncated_checkpoint_is_one_line(tmp_path, common):
    out = tmp_path / "out"
    assert train(out, "baseline", common).exit_code == 0
    (out / "mi_massive_variant.json").unlink()  # as if killed after the checkpoint, before the save
    ckpt = out / "checkpoint" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    res = train(out, "baseline", common)
    assert res.exit_code == 2
    assert "damaged or truncated" in one_error_line(res.output) and "delete it" in res.output
    ckpt.write_bytes(b"")
    assert "damaged or truncated" in one_error_line(train(out, "baseline", common).output)


# ------------------------------------------------------------------------------------ another variant in the dir
def test_a_finished_variant_dir_is_not_resumed_as_another_variant(tmp_path, saved, common):
    out = copy_of(saved, tmp_path)
    before = (out / "model.safetensors").read_bytes()
    res = train(out, "dyt", common)
    assert res.exit_code == 2
    assert "holds the variant 'kv_bias', not 'dyt'" in one_error_line(res.output)
    res = train(out, "kv_bias", [*common[:-2], "--warmup", "0"])  # same variant, other settings
    assert res.exit_code == 2 and "trained with other settings (train)" in one_error_line(res.output)
    assert (out / "model.safetensors").read_bytes() == before
    assert json.loads((out / "mi_massive_variant.json").read_text())["variant"]["name"] == "kv_bias"
    res = train(out, "kv_bias", common)  # the same run again: reused, not retrained
    assert res.exit_code == 0 and "reused" in res.output


def test_a_checkpoint_is_not_resumed_by_another_variant_with_the_same_parameters(tmp_path, common):
    out = tmp_path / "out"
    assert train(out, "baseline", [*common[:5], "4", *common[6:]]).exit_code == 0  # 4 steps
    (out / "mi_massive_variant.json").unlink()  # killed before the final save: only the checkpoint is left
    # tvr has exactly baseline's parameters: before, its 'resume' loaded baseline's weights and saved them as tvr
    res = train(out, "tvr", [*common[:5], "4", *common[6:]])
    assert res.exit_code == 2
    assert "belongs to variant 'baseline'" in one_error_line(res.output)
    assert not (out / "mi_massive_variant.json").exists()


# ------------------------------------------------------------------------------------ saved weights
def test_truncated_weights_are_refused_on_load(tmp_path, saved):
    out = copy_of(saved, tmp_path)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(MiMassiveError, match="truncated"):
        load_model(out)
    res = runner.invoke(app, ["scan", "--model", str(out), "--text", "The cat sat.", "-o", str(tmp_path / "s")])
    assert res.exit_code == 2 and "truncated" in one_error_line(res.output)
    assert not (tmp_path / "s").exists()


def test_edited_weights_fail_the_recorded_hash(tmp_path, saved):
    out = copy_of(saved, tmp_path)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(MiMassiveError, match="SHA-256 recorded when it was saved"):
        load_model(out)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.safetensors", "sub/../../outside.safetensors", ""])
def test_metadata_cannot_point_outside_the_variant_dir(tmp_path, saved, name):
    out = copy_of(saved, tmp_path)
    (tmp_path / "outside.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    meta_path = out / "mi_massive_variant.json"
    meta = json.loads(meta_path.read_text())
    meta["weights"] = name
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MiMassiveError, match="outside the variant directory|names no weights file"):
        load_model(out)


def test_intact_variant_still_loads_bit_identically(saved):
    from mi_massive.core.variants.io import load_variant_hf

    hf, _, meta = load_variant_hf(saved)
    from safetensors.torch import load_file

    stored = load_file(str(saved / "model.safetensors"))
    state = hf.state_dict()
    assert meta["bytes"] == (saved / "model.safetensors").stat().st_size
    assert all(torch.equal(state[k], v) for k, v in stored.items())


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("args, fragment", [
    (["train-variant", "--variant", ""], "variant name is empty"),
    (["train-variant", "--variant", "kv_bias+"], "has an empty part"),
    (["train-variant", "--variant", "baseline", "--lr", "nan"], "--lr must be a finite number"),
    (["train-variant", "--variant", "tvr", "--tvr-interval", "0"], "--tvr-interval must be a positive"),
    (["train-variant", "--variant", "baseline", "--n-eval", "0"], "--n-eval must be a positive"),
    (["compare-variants", "--variants", "baseline", "--scan-windows", "0"], "--scan-windows must be positive"),
    (["compare-variants", "--variants", "baseline", "--n-eval", "0"], "--n-eval and --scan-windows"),
])
def test_bad_training_options_are_one_line(tmp_path, common, args, fragment):
    res = runner.invoke(app, [args[0], *common, *args[1:], "-o", str(tmp_path / "o")])  # later options win
    assert res.exit_code == 2
    assert fragment in one_error_line(res.output)
    assert not (tmp_path / "o").exists()


def test_train_config_refuses_non_finite_numbers():
    from mi_massive.core.variants import TVRConfig, VariantSpec
    from mi_massive.training import TrainConfig

    for bad in ({"lr": float("nan")}, {"min_lr": float("inf")}, {"grad_clip": float("nan")},
                {"betas": (0.9, float("nan"))}):
        with pytest.raises(MiMassiveError, match="finite"):
            TrainConfig(**bad)
    with pytest.raises(MiMassiveError, match="finite"):
        TVRConfig(target_std=float("nan"))
    with pytest.raises(MiMassiveError, match="finite"):
        VariantSpec(kv_bias=True, kv_bias_init_std=float("inf"))


# ------------------------------------------------------------------------------------ same seed, same bytes
def test_same_seed_gives_the_same_json_apart_from_times(tmp_path, common):
    import shutil

    out = tmp_path / "cmp"
    texts, metas = [], []
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        res = runner.invoke(app, ["compare-variants", "--variants", "baseline,kv_bias", *common, "--scan-windows", "2",
                                  "-o", str(out)])
        assert res.exit_code == 0, res.output
        data = json.loads((out / "compare.json").read_text())
        assert set(data["seconds"]) == {"total", "variants"} and set(data["seconds"]["variants"]) == {"baseline", "kv_bias"}
        assert all("seconds" not in r["train"] and "seconds_eval" not in r for r in data["reports"])
        data["provenance"].pop("created_utc")
        data.pop("seconds")
        texts.append(json.dumps(data, sort_keys=True))
        meta = json.loads((out / "kv_bias" / "mi_massive_variant.json").read_text())
        assert "seconds" not in meta["extra"]["log"] and meta["extra"]["seconds"]["train"] > 0
        meta["extra"].pop("seconds")
        metas.append(meta)
    assert texts[0] == texts[1]
    assert metas[0] == metas[1]  # same weights hash too: training is deterministic
