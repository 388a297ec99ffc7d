"""The ``mi-massive scan`` / ``models`` commands: output contract, determinism and every error case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mi_massive.cli import app

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mi_massive.cli.__main__"]
runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_scan_writes_the_json_contract_and_figures(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("scan", "--model", "toy-gpt2", "--text", "Summer is warm. Winter is cold.", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "scan.json").read_text())
    prov = data["provenance"]
    assert prov["model"]["spec"] == "toy-gpt2" and prov["model"]["fingerprint"] == "toy:toy-gpt2:seed=0"
    assert {"versions", "created_utc", "options", "corpus", "seed"} <= set(prov)
    assert prov["corpus"]["prepend_bos"] is False
    assert len(data["tokens"]) == 1 and len(data["str_tokens"][0]) == len(data["tokens"][0])
    layer = data["layers"][1]
    assert {"layer", "hook", "top_values", "median", "ratio", "per_sequence"} <= set(layer)
    assert layer["hook"] == "blocks.0.hook_resid_post" and len(layer["top_values"]) == 3
    assert data["massive"] == []
    assert "top-1 |h|" in proc.stdout
    html = (out / "layerwise.html").read_text()
    assert "<script src=" not in html and "Plotly.newPlot" in html  # plotly.js inlined, no CDN
    assert (out / "feature_3d.html").exists()


def test_scan_output_is_deterministic_except_time(tmp_path):
    texts = []
    for name in ("a", "b"):
        result = invoke("scan", "--model", "toy-llama", "--corpus", "builtin", "--n-samples", "3", "--seq-len", "32",
                        "--seed", "4", "--no-figures", "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        data = json.loads((tmp_path / name / "scan.json").read_text())
        data["provenance"].pop("created_utc")
        texts.append(json.dumps(data, sort_keys=True))
    assert texts[0] == texts[1]


def test_models_lists_aliases():
    result = invoke("models")
    assert result.exit_code == 0 and "smollm2-135m" in result.output and "toy-llama" in result.output


@pytest.fixture()
def error_files(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait ".encode("latin-1") * 30)
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    a_file = tmp_path / "im-a-file"
    a_file.write_text("x")
    return {"blank": blank, "latin": latin, "gguf": gguf, "file": a_file, "tmp": tmp_path}


ERROR_CASES = {
    "unknown model": (["--model", "no-such-alias-xyz", "--text", "hi"], "no-such-alias-xyz"),
    "corrupted gguf": (["--model", "{gguf}", "--text", "hi"], "cannot read GGUF"),
    "empty text": (["--model", "toy-gpt2", "--text", "   "], "empty"),
    "whitespace corpus": (["--model", "toy-gpt2", "--corpus", "{blank}", "--seq-len", "8"], "empty"),
    "undecodable file": (["--model", "toy-gpt2", "--corpus", "{latin}", "--seq-len", "8"], "not UTF-8"),
    "seq_len > context": (["--model", "toy-gpt2", "--corpus", "builtin", "--seq-len", "100000"], "context"),
    "n_samples 0": (["--model", "toy-gpt2", "--corpus", "builtin", "--n-samples", "0"], "--n-samples"),
    "top_k 0": (["--model", "toy-gpt2", "--text", "hi", "--top-k", "0"], "--top-k"),
    "out is a file": (["--model", "toy-gpt2", "--text", "hi", "--out", "{file}"], "is a file"),
    "no text or corpus": (["--model", "toy-gpt2"], "exactly one of"),
    "bad dtype": (["--model", "toy-gpt2", "--text", "hi", "--dtype", "int3"], "dtype"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_are_one_line_exit_2_and_write_nothing(case, error_files, monkeypatch):
    monkeypatch.setenv("MI_MASSIVE_CACHE", str(error_files["tmp"] / "cache"))
    args, fragment = ERROR_CASES[case]
    args = [a.format(**error_files) for a in args]
    out = error_files["tmp"] / f"out-{case.replace(' ', '_')}"
    if "--out" not in args:
        args += ["--out", str(out)]
    result = invoke("scan", *args)
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_error_through_a_real_process_has_no_traceback(tmp_path):
    proc = run_cli("scan", "--model", "toy-gpt2", "--text", "hi", "--top-k", "0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --top-k")
    assert "Traceback" not in proc.stderr


def test_usage_error_exits_2():
    assert invoke("scan", "--no-such-flag").exit_code == 2
