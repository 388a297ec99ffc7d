"""The mlp / svd / tokens / intervene commands on toy models: JSON written, clear one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mi_massive.cli import app

runner = CliRunner()
COMMON = ["--model", "toy-gpt2", "--corpus", "builtin", "--n-samples", "2", "--seq-len", "32", "--no-figures"]


def test_mlp_and_svd_commands_write_json(tmp_path):
    res = runner.invoke(app, ["mlp", *COMMON, "--layer", "1", "--dim", "3", "-o", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "m" / "mlp.json").read_text())
    assert data["layer"] == 1 and data["dim"] == 3 and data["check"]["max_abs_error"] < 1e-3
    assert "not massive" in data["notes"][0]
    res = runner.invoke(app, ["svd", *COMMON, "--layer", "1", "--dim", "3", "--n-boot", "50", "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "s" / "svd.json").read_text())
    assert data["spectrum"]["vt0_dim"] >= 0 and "Orientation" in data["notes"][0]


def test_commands_fail_cleanly_without_massive_activations(tmp_path):
    res = runner.invoke(app, ["tokens", *COMMON, "-o", str(tmp_path / "t")])
    assert res.exit_code == 2 and "no massive activation" in res.output
    res = runner.invoke(app, ["intervene", "--model", "toy-gpt2", "--corpus", "builtin", "--n-samples", "2",
                              "--n-calib", "2", "--seq-len", "32", "--no-figures", "-o", str(tmp_path / "i")])
    assert res.exit_code == 2 and "no massive activation" in res.output
    res = runner.invoke(app, ["intervene", "--model", "toy-gpt2", "--variants", "some", "-o", str(tmp_path / "j")])
    assert res.exit_code == 2 and "--variants" in res.output
    res = runner.invoke(app, ["mlp", *COMMON, "--layer", "9", "-o", str(tmp_path / "k")])
    assert res.exit_code == 2 and "out of range" in res.output
