"""CLI: bad input -> one-line error and exit 2 (subprocess); a toy run writes its JSON and figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mi_massive.cli import app

EXE = Path(sys.executable).parent / "mi-massive"


@pytest.mark.parametrize("args,message", [
    (["ablate", "-m", "toy-gpt2", "--text", "hi there", "--heads", "1.9", "-o", "{out}"], "head 9 out of range"),
    (["ablate", "-m", "toy-gpt2", "--text", "hi there", "--mlp", "2", "--mode", "shuffle", "-o", "{out}"],
     "unknown ablation mode"),
])
def test_bad_inputs_exit_2(tmp_path, args, message):
    args = [a.replace("{out}", str(tmp_path / "o")) for a in args]
    proc = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_empty_head_set_and_attribute_run(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["ablate", "-m", "toy-gpt2", "--text", "hi there", "--heads", " ", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "empty head set" in r.output
    r = runner.invoke(app, ["attribute", "-m", "toy-llama", "--text", "hi", "--layer", "7", "--dim", "1",
                            "-o", str(tmp_path)])
    assert r.exit_code == 2 and "--layer 7 out of range" in r.output
    r = runner.invoke(app, ["attribute", "-m", "toy-gpt2", "--text", "The cat sat.", "--layer", "2", "--dim", "3",
                            "--position", "1", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "a" / "attribution.json").read_text())
    assert data["rel_error"] < 1e-4 and (tmp_path / "a" / "attribution.html").exists()
    r = runner.invoke(app, ["patch", "-m", "toy-gpt2", "--clean", "ab", "--corrupted", "ac", "--metric",
                            "entry:1:1:3", "--components", "resid_pre,head", "-o", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "p" / "patching.json").read_text())
    assert data["results"]["resid_pre"][0][1] == pytest.approx(data["clean"], abs=1e-5)


def test_console_names_targets_first_block_and_single_sequence_ci(tmp_path):
    """ablate names what it removed, the first massive block and shows a one-sequence CI as n/a;
    heads prints its highest and lowest rows as two labelled tables."""
    runner = CliRunner()
    r = runner.invoke(app, ["ablate", "-m", "toy-gpt2", "--text", "The cat sat on the mat.", "--heads", "L1H0,L2H1",
                            "--mlp", "1", "--n-null", "0", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "removes L1H0, L2H1 (zero ablation)" in r.output and "removes MLP 1" in r.output
    assert "first massive block: none" in r.output and "n/a (1 sequence)" in r.output
    r = runner.invoke(app, ["heads", "-m", "toy-gpt2", "--text", "The cat sat on the mat.", "--top-k", "2",
                            "-o", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    assert "highest 2 heads" in r.output and "lowest 2 heads:" in r.output
