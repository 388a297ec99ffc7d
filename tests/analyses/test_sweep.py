"""Batched + cached-residual head sweep == naive loop; partial results resume without recomputation."""

from __future__ import annotations

import json

import pytest
import torch

import mi_massive.analyses.sweep.run as sweep_mod
from mi_massive.core.corpus import text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks import reference_means
from mi_massive.analyses.sweep.run import head_sweep

TEXTS = ["The cat sat on the mat.", "A dog ran far in the park!", "Hi"]


@pytest.mark.parametrize("fixture,loss", [("toy_gpt2", True), ("toy_llama", False)])
def test_fast_equals_naive(request, fixture, loss):
    model = request.getfixturevalue(fixture)
    corpus = text_corpus(model, TEXTS, prepend_bos=True)  # unequal lengths: right padding
    entries = [(1, 0, 3), (2, 1, 5)]
    fast = head_sweep(model, corpus, entries, loss=loss, method="fast", max_rows=5, batch_size=2, progress=False)
    naive = head_sweep(model, corpus, entries, loss=loss, method="naive", batch_size=2, progress=False)
    f, n = torch.tensor(fast.values), torch.tensor(naive.values)
    assert f.shape == (3, 4, 3, 2 + loss)
    torch.testing.assert_close(f, n, atol=1e-5, rtol=1e-4)
    base = torch.tensor(fast.baseline)
    assert (f - base).abs().amax((1, 2, 3)).min() > 1e-4  # ablations do change the metrics
    assert (f[2, :, :, 0] == base[:, 0]).all()  # a layer-2 head cannot change a layer-1 entry


def test_mean_mode_and_resume(toy_llama, tmp_path, monkeypatch):
    model = toy_llama
    corpus = text_corpus(model, TEXTS[:2], prepend_bos=True)
    names = [f"blocks.{l}.attn.hook_z" for l in range(3)]
    means = reference_means(model, corpus, names)
    entries = [(2, 0, 7)]
    naive = head_sweep(model, corpus, entries, mode="mean", means=means, method="naive", progress=False)
    part = tmp_path / "partial.json"
    fast = head_sweep(model, corpus, entries, mode="mean", means=means, partial_path=part, progress=False)
    torch.testing.assert_close(torch.tensor(fast.values), torch.tensor(naive.values), atol=1e-5, rtol=1e-4)
    data = json.loads(part.read_text())
    assert sorted(data["units"]) == ["b0:L0", "b0:L1", "b0:L2"]
    del data["units"]["b0:L1"]  # as if interrupted before layer 1 finished
    part.write_text(json.dumps(data))
    calls = []
    real = sweep_mod._fast_layer
    monkeypatch.setattr(sweep_mod, "_fast_layer", lambda *a, **k: calls.append(a[7]) or real(*a, **k))
    again = head_sweep(model, corpus, entries, mode="mean", means=means, partial_path=part, progress=False)
    assert calls == [1]  # only the missing layer was recomputed
    assert again.values == fast.values
    with pytest.raises(MiMassiveError, match="other options"):
        head_sweep(model, corpus, [(1, 0, 7)], partial_path=part, progress=False)


def test_sweep_bad_inputs(toy_gpt2):
    corpus = text_corpus(toy_gpt2, TEXTS[:1], prepend_bos=True)
    with pytest.raises(MiMassiveError, match="out of range"):
        head_sweep(toy_gpt2, corpus, [(9, 0, 1)], progress=False)
    with pytest.raises(MiMassiveError, match="nothing to measure"):
        head_sweep(toy_gpt2, corpus, [], progress=False)
    with pytest.raises(MiMassiveError, match="needs reference means"):
        head_sweep(toy_gpt2, corpus, [(1, 0, 1)], mode="mean", progress=False)


def test_mlp_sweep_fast_equals_naive_and_independent(toy_llama):
    """MLP rows: fast == naive, and equal to an independent run_capture with hook_mlp_out zeroed."""
    from mi_massive.core.engine import run_capture
    from mi_massive.core.hooks import ablate_mlps

    corpus = text_corpus(toy_llama, TEXTS, prepend_bos=True)
    entries = [(1, 0, 5), (2, 1, 7)]
    fast = sweep_mod.sweep(toy_llama, corpus, entries, mlps=True, loss=True, batch_size=2, progress=False)
    naive = sweep_mod.sweep(toy_llama, corpus, entries, mlps=True, loss=True, method="naive", batch_size=2,
                            progress=False)
    torch.testing.assert_close(torch.tensor(fast.mlp_values), torch.tensor(naive.mlp_values), atol=1e-4, rtol=1e-5)
    _, ids, _ = next(corpus.batches(1))
    _, acts = run_capture(toy_llama, ids, ["blocks.2.hook_resid_post"], fwd_hooks=ablate_mlps(toy_llama, [1]))
    assert fast.mlp_values[1][0][1] == pytest.approx(acts["blocks.2.hook_resid_post"][0, 1, 7].item(), abs=1e-4)
    assert sweep_mod.head_sweep is sweep_mod.sweep
    top = fast.ranked(0, 1)[0]
    every = [abs(e[0]) for heads in fast.effect for e in heads] + [abs(e[0]) for e in fast.mlp_effect]
    assert abs(top["effect"]) == max(every)


def test_sweep_command_resumes_and_ranks(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    runner = CliRunner()
    args = ["sweep", "-m", "toy-gpt2", "--text", "The cat sat on the mat.", "--layer", "1", "--dim", "3",
            "--no-figures", "-o", str(tmp_path / "s")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "L0H" in r.output and "MLP" in r.output and "effect on entry L1 p0 d3" in r.output
    data = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert len(data["effect"]) == 3 and len(data["mlp_effect"]) == 3
    assert not (tmp_path / "s" / "sweep.partial.json").exists()  # removed once complete
    r = runner.invoke(app, [*args[:-1], str(tmp_path / "m"), "--mode", "resample"])
    assert r.exit_code == 2 and "zero or mean" in r.output


def test_same_seed_same_bytes_except_time(tmp_path):
    """The wall time lives with the time stamp in provenance; everything else of sweep.json is reproducible."""
    import json

    from typer.testing import CliRunner

    from mi_massive.cli import app

    texts = []
    for run in ("a", "b"):
        r = CliRunner().invoke(app, ["sweep", "--model", "toy-gpt2", "--corpus", "builtin", "--n-samples", "2",
                                     "--seq-len", "8", "--layer", "2", "--dim", "5", "--no-figures",
                                     "--out", str(tmp_path / run)])
        assert r.exit_code == 0, r.output
        data = json.loads((tmp_path / run / "sweep.json").read_text())
        assert "seconds" not in data and data["provenance"]["timing"]["seconds"] > 0
        for key in ("created_utc", "timing"):
            data["provenance"].pop(key)
        texts.append(json.dumps(data, sort_keys=True))
    assert texts[0] == texts[1]
