"""The unit engine (mi_massive.core.units): atomic results, resume by key, failures with reasons, Ray = local."""

from __future__ import annotations

import json

import pytest

from mi_massive.core.units import NotApplicable, Unit, UnitStore, run_units
from mi_massive.errors import MiMassiveError


def boom(needs, *, message: str) -> str:
    raise MiMassiveError(message)


def skip(needs) -> str:
    raise NotApplicable("nothing to do here")


def test_failures_have_reasons_dependents_are_blocked_others_complete(tmp_path):
    store = UnitStore(tmp_path)
    units = [Unit("a", "tests.core.test_units:boom", {"message": "bad input\nsecond line"}),
             Unit("b", "mi_massive.core.units:echo", {"text": "x"}, needs=("a",)),
             Unit("c", "mi_massive.core.units:echo", {"text": "y"}),
             Unit("d", "tests.core.test_units:skip")]
    report = run_units(units, store, engine="local", progress=False)
    assert report.failed == {"a": "bad input", "b": "not run: needs a, which failed"}
    assert report.computed == ["c", "d"]
    assert store.text("c") == "y" and json.loads(store.text("d")) == {"not_applicable": "nothing to do here"}
    assert store.error("a") == "bad input" and not store.path("a").exists()
    again = run_units(units, store, engine="local", progress=False)  # the failed ones run again, the rest not
    assert again.reused == ["c", "d"] and sorted(again.failed) == ["a", "b"]


def test_a_changed_argument_or_a_corrupted_result_is_recomputed(tmp_path):
    store = UnitStore(tmp_path)
    run_units([Unit("a", "mi_massive.core.units:echo", {"text": "1"})], store, engine="local", progress=False)
    report = run_units([Unit("a", "mi_massive.core.units:echo", {"text": "2"})], store, engine="local", progress=False)
    assert report.computed == ["a"] and store.text("a") == "2"
    store.path("a").write_text("2 tampered")
    report = run_units([Unit("a", "mi_massive.core.units:echo", {"text": "2"})], store, engine="local", progress=False)
    assert report.computed == ["a"] and store.text("a") == "2"
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_plans_are_refused_in_one_line(tmp_path):
    store = UnitStore(tmp_path)
    with pytest.raises(MiMassiveError, match="not listed before it"):
        run_units([Unit("b", "mi_massive.core.units:echo", {"text": ""}, needs=("a",))], store, engine="local")
    with pytest.raises(MiMassiveError, match="bad unit id"):
        run_units([Unit("../x", "mi_massive.core.units:echo", {"text": ""})], store, engine="local")
    with pytest.raises(MiMassiveError, match="unknown engine"):
        run_units([], store, engine="spark")


def test_without_ray_auto_runs_here_and_says_so(tmp_path, monkeypatch):
    import mi_massive.core.units as units

    monkeypatch.setattr(units, "ray_available", lambda: False)
    notes = []
    report = run_units([Unit("a", "mi_massive.core.units:echo", {"text": "1"})], UnitStore(tmp_path),
                       progress=False, log=notes.append)
    assert report.engine == "local" and "Ray is not installed" in notes[0]
    with pytest.raises(MiMassiveError, match="Ray is not installed"):
        run_units([], UnitStore(tmp_path), engine="ray")


def test_sharded_sweep_on_ray_equals_the_single_process_sweep(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed")
    from mi_massive.analyses.sweep.run import sweep
    from mi_massive.analyses.sweep.shard import sharded_sweep
    from mi_massive.core.corpus import load_corpus
    from mi_massive.core.loading import load_model
    from mi_massive.core.names import act_name
    from mi_massive.core.references import reference_means

    model = load_model("toy-gpt2")
    corpus_args = {"text": None, "corpus": "builtin", "n_samples": 3, "seq_len": 12, "seed": 0,
                   "prepend_bos": False, "prepend_bos_source": "user"}
    data = load_corpus(model, "builtin", n_samples=3, seq_len=12, seed=0, prepend_bos=False)
    names = [act_name(k, layer) for layer in range(3) for k in ("z", "mlp_out")]
    means = reference_means(model, data, names)
    assert means[act_name("mlp_out", 0)].shape == (2, 64)  # was [2, 2, 64] when z came first (crashed the sweep)
    single = sweep(model, data, [(2, 0, 5), (1, 3, 7)], loss=True, mlps=True, mode="mean",
                   means=means, progress=False)
    merged = sharded_sweep(UnitStore(tmp_path), model="toy-gpt2", n_layers=3, shards=3, engine="ray", progress=False,
                           dtype="float32", device="cpu", corpus=corpus_args, entries=[[2, 0, 5], [1, 3, 7]],
                           loss=True, mlps=True, mode="mean", method="fast", batch_size=8)
    for field in ("metric_names", "baseline", "values", "effect", "mlp_values", "mlp_effect"):
        assert getattr(merged, field) == getattr(single, field), field
    assert merged.ranked(0, 5) == single.ranked(0, 5)


def test_sharded_patch_equals_the_single_process_grid(tmp_path):
    from mi_massive.analyses.patch.run import patch
    from mi_massive.analyses.patch.shard import sharded_patch
    from mi_massive.core.loading import load_model

    model = load_model("toy-llama")
    kw = dict(clean="the cat sat on a mat", corrupted="the dog sat on a mat", metric="loss",
              components=["resid_pre", "attn_out", "mlp_out", "head"], method="fast", prepend_bos=True)
    single = patch(model, kw["clean"], kw["corrupted"], metric="loss", components=kw["components"],
                   prepend_bos=True, progress=False)
    merged = sharded_patch(UnitStore(tmp_path), model="toy-llama", n_layers=3, shards=2, engine="local",
                           progress=False, dtype="float32", device="cpu", options={}, **kw)
    assert merged.results == single.results and merged.normalised == single.normalised
    assert (merged.clean, merged.corrupted) == (single.clean, single.corrupted)


def test_sharded_patch_cli_checks_inputs_without_a_forward(tmp_path, monkeypatch):
    """--shards checks the inputs with patch's own checks (check_patch_inputs): a bad prompt pair is a one-line
    error, a good one reaches the units, and no forward runs in the main process either way."""
    from typer.testing import CliRunner

    import mi_massive.analyses.patch.run as patch_run
    import mi_massive.analyses.patch.shard as patch_shard
    from mi_massive.cli import app

    def no_forward(*_args, **_kwargs):
        raise AssertionError("a forward ran while checking the inputs")

    def units_reached(*_args, **_kwargs):
        raise MiMassiveError("units reached")

    monkeypatch.setattr(patch_run, "_run", no_forward)
    monkeypatch.setattr(patch_shard, "sharded_patch", units_reached)
    args = ["patch", "--model", "toy-llama", "--shards", "2", "--engine", "local", "--out", str(tmp_path)]
    bad = CliRunner().invoke(app, args + ["--clean", "abc", "--corrupted", "abcd"])
    assert bad.exit_code == 2
    assert [line for line in bad.output.splitlines() if line.startswith("error:")] == [
        "error: clean and corrupted prompts must be single sequences of equal length (got (1, 3) and (1, 4) tokens)"]
    good = CliRunner().invoke(app, args + ["--clean", "abcd", "--corrupted", "abxd"])
    assert good.exit_code == 2 and "error: units reached" in good.output


def test_layer_rows_come_from_the_shard_that_owns_the_layer_and_every_layer_has_one_owner():
    from mi_massive.analyses.patch.shard import merge_grids
    from mi_massive.core.units import merge_layer_rows

    nan = float("nan")
    parts = [[["a0"], ["x"], ["x"]], [["x"], ["b1"], ["b2"]]]
    assert merge_layer_rows(parts, [[0], [1, 2]], "sweep") == [["a0"], ["b1"], ["b2"]]
    assert merge_layer_rows(parts, [[2], [0, 1]], "sweep") == [["x"], ["b1"], ["x"]]
    for groups in ([[0], [1]], [[0, 1], [1, 2]], [[0], [1, 2, 3]]):  # a layer missing, twice, out of range
        with pytest.raises(MiMassiveError, match="^patch shards do not cover every layer exactly once$"):
            merge_layer_rows(parts, groups, "patch")
    merged = merge_grids([[[1.0, None], [nan, nan]], [[nan, nan], [None, 4.0]]], [[0], [1]])
    assert merged[0][0] == 1.0 and merged[1][1] == 4.0 and merged[0][1] != merged[0][1] and merged[1][0] != merged[1][0]
