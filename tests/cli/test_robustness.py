"""Nothing lost, nothing corrupted, nothing executed: every bad input and fault of issue 13 as a regression test.

Each case must end as one ``error:`` line with exit code 2 (or behave correctly), never as a traceback,
and must leave the output directory either complete (its manifest says so) or as it was. Most cases run
in-process through typer's ``CliRunner`` (fast); the ones where a second process, a kill or the real
console matter run as subprocesses. Training-side cases (checkpoints, variant directories) are in
``tests/training/test_checkpoints_and_variant_dirs.py``.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hf_reference import block_outputs
from mi_massive.cli import app
from mi_massive.core.io import MANIFEST, OutRun, check_out_dir, read_manifest

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mi_massive.cli.__main__"]
runner = CliRunner()
SCAN = ["scan", "--model", "toy-llama", "--corpus", "builtin", "--n-samples", "2", "--seq-len", "16"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def run_cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def one_error_line(text: str) -> str:
    """The single ``error:`` line of a failed command's output (asserting there is exactly one, no traceback)."""
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def readonly_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a chmod-ed one, or (as root, who ignores modes) sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/kernel")
    try:
        (folder / "mi_massive_probe").open("w").close()
    except OSError:
        return folder
    pytest.skip("no read-only directory available")


# ------------------------------------------------------------------------------------ non-finite numbers
def _float_cases():
    """(command, float flag, the command's required options) for every float option of every command."""
    cases = []
    for cmd in app.registered_commands:
        sig = inspect.signature(cmd.callback)
        required = []
        for name, p in sig.parameters.items():
            info = p.default
            if getattr(info, "default", None) is ...:
                flag = next(d for d in info.param_decls if d.startswith("--"))
                required += [flag, "OUT" if name == "out" else ("toy-llama" if name == "model" else "x")]
        for name, p in sig.parameters.items():
            if p.annotation in (float, typing.Optional[float], "float", "Optional[float]"):
                flag = next(d for d in p.default.param_decls if d.startswith("--")).split("/")[0]
                cases.append((cmd.name, flag, required))
    return cases


FLOAT_CASES = _float_cases()


def test_every_float_option_of_every_command_is_covered():
    flags = {(c, f) for c, f, _ in FLOAT_CASES}
    assert {("scan", "--abs-threshold"), ("scan", "--rel-threshold"), ("train-variant", "--lr"),
            ("compare-variants", "--tvr-target"), ("report", "--rel-threshold")} <= flags


@pytest.mark.parametrize("command, flag, required", FLOAT_CASES, ids=[f"{c}{f}" for c, f, _ in FLOAT_CASES])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_before_anything_runs(tmp_path, command, flag, required, value):
    out = tmp_path / "out"
    args = [command, *[str(out) if a == "OUT" else a for a in required], flag, value]
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    line = one_error_line(res.output)
    assert f"{flag} must be a finite number" in line and value.lstrip("-") in line
    assert not out.exists()  # refused before the output directory was made


def test_nan_thresholds_through_a_real_process(tmp_path):
    proc = run_cli(*SCAN, "--abs-threshold", "nan", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == "error: --abs-threshold must be a finite number, got nan"


# ------------------------------------------------------------------------------------ output directories
def test_empty_out_is_refused_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke(*SCAN, "-o", "")
    assert res.exit_code == 2 and "--out is empty" in one_error_line(res.output)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current directory


def test_read_only_out_is_one_line(tmp_path):
    target = readonly_dir(tmp_path)
    proc = run_cli(*SCAN, "--no-figures", "--out", str(target))
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "not writable" in line and str(target) in line
    assert not (target / "scan.json").exists()
    sub = target / "new-sub-dir"  # a directory that cannot even be created
    proc = run_cli(*SCAN, "--no-figures", "--out", str(sub))
    assert proc.returncode == 2 and "cannot create output directory" in one_error_line(proc.stderr)


def test_disk_full_while_writing_the_result(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full_disk(fd):  # the result file hits ENOSPC; other files (the manifest) are fine
        if "scan.json" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    out = tmp_path / "deep" / "out"
    res = invoke(*SCAN, "--no-figures", "--out", str(out))
    assert res.exit_code == 2, res.output
    line = one_error_line(res.output)
    assert "No space left on device" in line and "scan.json" in line
    assert not (tmp_path / "deep").exists()  # nothing finished: the directories this run made are gone

    out.mkdir(parents=True)
    res = invoke(*SCAN, "--out", str(out))  # figures after scan.json would fail too: here scan.json fails first
    assert res.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == []  # no temp file, no manifest of a run that wrote nothing


def test_disk_full_after_part_of_the_outputs_marks_the_directory_failed(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full_disk(fd):
        if "layerwise" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    out = tmp_path / "out"
    res = invoke(*SCAN, "--out", str(out))
    assert res.exit_code == 2 and "No space left on device" in one_error_line(res.output)
    manifest = read_manifest(out)
    assert manifest["status"] == "failed" and list(manifest["files"]) == ["scan.json"]
    assert check_out_dir(out)[0].startswith("the last run (scan")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failed_commands_leave_no_new_empty_directory(tmp_path):
    out = tmp_path / "a" / "b" / "c"
    res = invoke("mlp", "--model", "toy-llama", "--corpus", "builtin", "--n-samples", "2", "--seq-len", "16",
                 "--out", str(out))  # the unplanted toy has no massive activation
    assert res.exit_code == 2 and "no massive activation" in one_error_line(res.output)
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    res = invoke("mlp", "--model", "toy-llama", "--corpus", "builtin", "--n-samples", "2", "--seq-len", "16",
                 "--out", str(existing))
    assert res.exit_code == 2 and existing.is_dir() and list(existing.iterdir()) == []  # the user's dir stays


def test_second_process_on_a_held_out_dir_gets_one_line(tmp_path):
    out = tmp_path / "out"
    holder = OutRun(out, "scan").start()  # this process holds --out, as a running command would
    try:
        proc = run_cli(*SCAN, "--no-figures", "--out", str(out))
        assert proc.returncode == 2
        line = one_error_line(proc.stderr)
        assert "is in use by another run" in line and f"pid {os.getpid()}" in line
        assert not (out / "scan.json").exists() and read_manifest(out)["run"] == holder.run_id
    finally:
        holder.finish("complete")
    proc = run_cli(*SCAN, "--no-figures", "--out", str(out))  # released: the next run goes ahead
    assert proc.returncode == 0, proc.stderr


def test_manifest_names_each_files_run_and_a_killed_rerun_never_looks_complete(tmp_path):
    out = tmp_path / "out"
    assert invoke(*SCAN, "--out", str(out)).exit_code == 0
    first = read_manifest(out)
    assert first["status"] == "complete" and check_out_dir(out) == []
    assert {"scan.json", "layerwise.html"} <= set(first["files"])
    assert {e["run"] for e in first["files"].values()} == {first["run"]}
    import hashlib

    assert first["files"]["scan.json"]["sha256"] == hashlib.sha256((out / "scan.json").read_bytes()).hexdigest()

    # a rerun killed (SIGKILL-like os._exit) after scan.json was replaced but before the figures
    code = ("import os, sys; import mi_massive.core.html as h; from mi_massive.cli import app\n"
            "h.save_figure = lambda *a, **k: os._exit(9)\n"
            "import mi_massive.core.cli as c\n"
            f"sys.argv = ['mi-massive', *{[*SCAN[:-1], '17', '--out', str(out)]!r}]\n"
            "app()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 9, proc.stderr
    killed = read_manifest(out)
    assert killed["status"] == "running" and killed["run"] != first["run"]
    assert killed["files"]["scan.json"]["run"] == killed["run"]  # new result ...
    assert killed["files"]["layerwise.html"]["run"] == first["run"]  # ... beside the old run's figure
    problems = check_out_dir(out)
    assert problems and "running" in problems[0]

    res = invoke(*SCAN, "--out", str(out))  # the next run says what happened and leaves it consistent
    assert res.exit_code == 0, res.output
    assert "did not finish" in res.output
    final = read_manifest(out)
    assert final["status"] == "complete" and check_out_dir(out) == []
    assert {e["run"] for e in final["files"].values()} == {final["run"]}


def test_rerun_with_fewer_outputs_says_which_files_are_older(tmp_path):
    out = tmp_path / "out"
    assert invoke(*SCAN, "--out", str(out)).exit_code == 0
    res = invoke(*SCAN, "--no-figures", "--out", str(out))
    assert res.exit_code == 0 and "from earlier runs" in res.output
    m = read_manifest(out)
    assert m["files"]["scan.json"]["run"] == m["run"] and m["files"]["layerwise.html"]["run"] != m["run"]
    assert set(m["runs"]) == {m["run"], m["files"]["layerwise.html"]["run"]}


def test_stale_temp_files_are_cleaned_on_the_next_run(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".scan.json.abcd1234.tmp", out / "sub" / ".checkpoint.pt.x_y9z0k1.tmp",
             out / "model.safetensors.tmp"]
    keep = [out / "notes.tmp", out / "my.json"]
    for p in stale + keep:
        p.write_text("x")
    res = invoke(*SCAN, "--no-figures", "--out", str(out))
    assert res.exit_code == 0 and "removed 3 temp file(s)" in res.output
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert read_manifest(out)["files"]["my.json"]["run"] is None  # not ours: listed, never claimed


# ------------------------------------------------------------------------------------ caches and models
def test_unwritable_cache_dir_is_one_line(tmp_path):
    cache = readonly_dir(tmp_path) / "mi_massive_cache"
    proc = run_cli(*SCAN, "--no-figures", "--out", str(tmp_path / "o"), env={"MI_MASSIVE_CACHE": str(cache)})
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "cannot write the model cache" in line and "MI_MASSIVE_CACHE" in line
    assert not (tmp_path / "o").exists()


def test_gguf_conversion_cleans_stale_temp_and_redoes_a_truncated_copy(tmp_path, monkeypatch):
    import mi_massive.core.loading.gguf as gguf

    monkeypatch.setenv("MI_MASSIVE_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(path, digest, tmp):  # stands in for the 25 s dequantisation
        calls.append(path)
        (tmp / "model.safetensors").write_bytes(b"w" * 1000)
        (tmp / gguf.SOURCE).write_text(json.dumps({"sha256": digest, "files": {"model.safetensors": 1000}}))

    monkeypatch.setattr(gguf, "_convert", fake_convert)
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF-ish")
    (tmp_path / "cache" / "gguf" / ".convert-killed").mkdir(parents=True)  # left by a killed conversion
    target, _ = gguf.converted_gguf_dir(src)
    assert len(calls) == 1 and not list(target.parent.glob(".convert-*"))
    assert gguf.converted_gguf_dir(src)[0] == target and len(calls) == 1  # cached
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])  # truncated on disk
    assert gguf.converted_gguf_dir(src)[0] == target and len(calls) == 2  # converted again, not loaded broken
    assert weights.stat().st_size == 1000


# ------------------------------------------------------------------------------------ bounds and counts
@pytest.mark.parametrize("args", [["attention", "--text", "hi", "--layers", "0-999999999"],
                                  ["ablate", "--corpus", "builtin", "--mlp", "0-999999999"],
                                  ["attention", "--text", "hi", "--heads", "5,123456789"]])
def test_huge_ranges_are_refused_before_expansion(tmp_path, args):
    import time

    start = time.perf_counter()
    res = invoke(args[0], "--model", "toy-llama", *args[1:], "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "is out of range" in one_error_line(res.output)
    assert time.perf_counter() - start < 30  # expanding 1e9 items would take minutes and ~40 GB


def _toy_scan(batch_size: int, **kw):
    from mi_massive.analyses.scan.run import scan
    from mi_massive.core.corpus import builtin_corpus
    from mi_massive.core.loading import load_toy

    model = load_toy("toy-llama", seed=0)
    corpus = builtin_corpus(model, n_samples=5, seq_len=24, seed=1, prepend_bos=True)
    result = scan(model, corpus, batch_size=batch_size, include_embed=False, progress=False, **kw)
    hf = model.original_model
    outs = block_outputs(hf, hf.model.layers, torch.tensor(corpus.sequences))
    return result, [h.abs().numpy() for h in outs]


def test_thresholds_zero_cap_what_is_stored_and_count_everything():
    from mi_massive.analyses.scan.record import MAX_MASSIVE_ENTRIES

    result, outs = _toy_scan(2, abs_threshold=0.0, rel_threshold=0.0)
    per_layer = [int((a > 0).sum()) for a in outs]
    assert sum(per_layer) > MAX_MASSIVE_ENTRIES  # the case that used to exhaust memory
    assert [r.n_massive for r in result.layers] == per_layer
    assert result.summary.n_entries == sum(per_layer)
    assert len(result.massive) == MAX_MASSIVE_ENTRIES
    every = np.sort(np.concatenate([a.ravel() for a in outs]))[::-1]
    kept = np.array([abs(e.value) for e in result.massive])
    assert kept.min() == pytest.approx(every[MAX_MASSIVE_ENTRIES - 1], rel=1e-5)  # the largest are kept
    positions = {p.position: p.count for p in result.summary.positions}
    want = {p: sum(int((a[:, p] > 0).sum()) for a in outs) for p in range(24)}
    assert positions == {p: n for p, n in want.items() if n}
    dims = {d.dim: d.count for d in result.summary.dims}
    want = {d: sum(int((a[..., d] > 0).sum()) for a in outs) for d in range(outs[0].shape[-1])}
    assert dims == {d: n for d, n in want.items() if n}


def test_near_massive_keeps_the_largest_in_an_order_independent_of_batch_size():
    from mi_massive.analyses.scan.record import MAX_NEAR_ENTRIES

    runs = [_toy_scan(b, abs_threshold=0.01, rel_threshold=1e9) for b in (1, 2, 5)]
    (first, outs), others = runs[0], [r for r, _ in runs[1:]]
    everything = np.sort(np.concatenate([a[a > 0.01] for a in outs]))[::-1]
    assert first.near_massive_total == len(everything) > MAX_NEAR_ENTRIES
    kept = sorted((abs(e.value) for e in first.near_massive), reverse=True)
    assert kept == pytest.approx(everything[:MAX_NEAR_ENTRIES].tolist(), rel=1e-5)
    keys = [(e.layer, e.sequence, e.position, e.dim) for e in first.near_massive]
    assert keys == sorted(keys)  # listed in scan order
    for other in others:
        assert other.to_dict()["near_massive"] == first.to_dict()["near_massive"]
        assert other.near_massive_total == first.near_massive_total


def test_massive_list_and_summary_do_not_depend_on_batch_size():
    from mi_massive.analyses.scan.run import scan
    from mi_massive.core.corpus import builtin_corpus
    from mi_massive.core.loading import load_toy

    model = load_toy("toy-llama", seed=0, plant=[(1, 5, 3000.0)])
    corpus = builtin_corpus(model, n_samples=4, seq_len=16, seed=0, prepend_bos=True)
    a, b = (scan(model, corpus, batch_size=n, abs_threshold=0.3, rel_threshold=3.0, progress=False).to_dict()
            for n in (1, 4))
    assert a["massive"] and a["massive"] == b["massive"] and a["summary"] == b["summary"]


# ------------------------------------------------------------------------------------ hints and scripts
def test_float16_overflow_blames_float16_not_the_model(tmp_path):
    res = invoke("mlp", "--model", "random:llama-1b?tiny=1&plant=0:5:100000", "--dtype", "float16",
                 "--corpus", "builtin", "--n-samples", "2", "--seq-len", "16", "--prepend-bos", "--layer", "1",
                 "--no-figures", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert "float16 run overflowed" in line and "--dtype float32" in line
    assert "model itself" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--out", ""], "--out is empty"),
    (["--out", "{tmp}"], "is a directory"),
    (["--out", "{tmp}/missing/o.json"], "does not exist"),
    (["--out", "{tmp}/x.json", "--partial", "{tmp}/x.json"], "must be different"),
    (["--out", "{ro}/o.json"], "cannot write in"),
    (["--layer", "99"], "out of range"),
    (["--n-samples", "0"], "--n-samples"),
])
def test_head_sweep_script_errors_are_one_line(tmp_path, args, fragment):
    ro = readonly_dir(tmp_path)
    args = [a.format(tmp=tmp_path, ro=ro) for a in args]
    if "--partial" not in args:
        args += ["--partial", str(tmp_path / "p.json")]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "head_sweep.py"), "--model", "toy-llama",
                           "--layer", "1", "--dim", "5", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert fragment in one_error_line(proc.stderr)
