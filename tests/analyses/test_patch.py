"""Activation patching: clean activations restore the clean metric; native grids == transformer_lens.patching."""

from __future__ import annotations

import pytest
import torch

from mi_massive.core.corpus import text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.analyses.patch.run import patch


def _pair(model):
    clean = torch.tensor(text_corpus(model, "Mary gave it", prepend_bos=True).sequences)
    corrupted = clean.clone()
    corrupted[0, 4] = clean[0, 4] + 1  # one token differs
    return clean, corrupted


def test_native_equals_transformer_lens_and_restores(toy_gpt2):
    model = toy_gpt2
    clean, corrupted = _pair(model)
    metric = "logit_diff:70:80"
    tl = patch(model, clean, corrupted, metric=metric, components=["resid_pre", "head"], backend="transformer_lens",
               progress=False)
    nat = patch(model, clean, corrupted, metric=metric, components=["resid_pre", "head"], backend="native",
                progress=False)
    for c in ("resid_pre", "head"):
        torch.testing.assert_close(torch.tensor(nat.results[c]), torch.tensor(tl.results[c]), atol=1e-4, rtol=1e-4)
    grid = torch.tensor(nat.results["resid_pre"])
    assert grid[0, 4].item() == pytest.approx(nat.clean, abs=1e-5)  # the differing token's residual restores all
    assert grid[0, 3].item() == pytest.approx(nat.corrupted, abs=1e-5)  # an identical position changes nothing
    assert nat.normalised["resid_pre"][0][4] == pytest.approx(1.0, abs=1e-4)


def test_entry_metric_native(toy_llama):
    model = toy_llama
    clean, corrupted = _pair(model)
    res = patch(model, clean, corrupted, metric="entry:2:8:3", components=["resid_pre"], progress=False)
    assert res.backend == "native"
    grid = torch.tensor(res.results["resid_pre"])
    assert grid[0, 4].item() == pytest.approx(res.clean, abs=1e-5)  # the embedding of the differing token
    assert grid[1, 10].item() == pytest.approx(res.corrupted, abs=1e-5)  # a later position cannot reach position 8


def test_patch_bad_inputs(toy_gpt2):
    clean, corrupted = _pair(toy_gpt2)
    with pytest.raises(MiMassiveError, match="unknown metric"):
        patch(toy_gpt2, clean, corrupted, metric="kl", progress=False)
    with pytest.raises(MiMassiveError, match="equal length"):
        patch(toy_gpt2, clean, corrupted[:, :-1], metric="loss", progress=False)
    with pytest.raises(MiMassiveError, match="unknown component"):
        patch(toy_gpt2, clean, corrupted, metric="loss", components=["embed"], progress=False)
    with pytest.raises(MiMassiveError, match="only logits"):
        patch(toy_gpt2, clean, corrupted, metric="entry:1:0:0", backend="transformer_lens", progress=False)


def test_string_token_logit_diff_equals_id_form(toy_llama):
    ids = [toy_llama.tokenizer.encode(t, add_special_tokens=False)[0] for t in ("a", "b")]
    by_id = patch(toy_llama, "abcde", "abxde", metric=f"logit_diff:{ids[0]}:{ids[1]}",
                  components=["resid_pre"], progress=False)
    by_str = patch(toy_llama, "abcde", "abxde", metric='logit_diff:"a":"b"', components=["resid_pre"], progress=False)
    assert by_str.results == by_id.results and by_str.clean == by_id.clean  # the same metric: bit-identical
    with pytest.raises(MiMassiveError, match="not one"):
        patch(toy_llama, "abcde", "abxde", metric='logit_diff:"ab":"b"', progress=False)


def test_callable_metric_equals_string_metric(toy_llama):
    ids = [toy_llama.tokenizer.encode(t, add_special_tokens=False)[0] for t in ("a", "b")]
    entry = patch(toy_llama, "abcde", "abxde", metric="entry:2:3:7", components=["resid_pre", "head"], progress=False)
    fn = patch(toy_llama, "abcde", "abxde", components=["resid_pre", "head"], progress=False,
               metric=lambda logits, cache: cache["blocks.2.hook_resid_post"][0, 3, 7])
    for c in entry.results:  # the fast path reads the entry from a shorter (causal) window: float noise only
        torch.testing.assert_close(torch.tensor(fn.results[c]), torch.tensor(entry.results[c]), atol=1e-5, rtol=1e-5)
    assert fn.metric == "custom:<lambda>"
    diff = patch(toy_llama, "abcde", "abxde", metric=f"logit_diff:{ids[0]}:{ids[1]}", backend="native",
                 components=["mlp_out"], progress=False)

    def logit_diff(logits, cache):
        return logits[0, -1, ids[0]] - logits[0, -1, ids[1]]

    fn = patch(toy_llama, "abcde", "abxde", metric=logit_diff, metric_hooks=[], components=["mlp_out"],
               progress=False)
    torch.testing.assert_close(torch.tensor(fn.results["mlp_out"]), torch.tensor(diff.results["mlp_out"]),
                               atol=1e-5, rtol=1e-5)
    assert fn.backend == "native"


def test_patching_round_trip_and_table(toy_llama, tmp_path):
    from mi_massive.analyses.patch.record import PatchingResult

    res = patch(toy_llama, "abcde", "abxde", metric="entry:2:3:7", components=["resid_pre", "head"], progress=False)
    again = PatchingResult.load(res.save(tmp_path / "patching.json"))
    assert type(again) is PatchingResult and again.results == res.results and again.clean == res.clean
    df = res.to_dataframe()
    assert list(df.columns) == ["component", "layer", "index", "index_kind", "value", "normalised"]
    assert len(df) == 3 * 5 + 3 * 4 and set(df["index_kind"]) == {"position", "head"}


ALL = ["resid_pre", "attn_out", "mlp_out", "head"]


@pytest.mark.parametrize("fixture", ["toy_gpt2", "toy_llama"])
@pytest.mark.parametrize("metric", ["loss", "loss:last", "loss:2,5", 'logit_diff:"a":"b"', "entry:2:4:7",
                                    "entry:1:0:5"])
def test_fast_equals_naive_and_transformer_lens(request, fixture, metric):
    """Every component and metric: the fast path == one forward per cell == transformer_lens.patching (1e-5)."""
    model = request.getfixturevalue(fixture)
    args = dict(metric=metric, components=ALL, prepend_bos=True, progress=False)
    fast = patch(model, "abcdefg", "abxdefg", max_rows=5, **args)  # several chunks per layer
    naive = patch(model, "abcdefg", "abxdefg", method="naive", **args)
    assert fast.backend == "native" and "method" not in fast.provenance["options"]
    assert naive.provenance["options"]["method"] == "naive"
    assert fast.clean == naive.clean and fast.corrupted == naive.corrupted
    scale = max(1.0, abs(fast.corrupted))  # entry metrics are ~3000 (the planted value): compare relatively
    for c in ALL:
        torch.testing.assert_close(torch.tensor(fast.results[c]), torch.tensor(naive.results[c]), atol=1e-5 * scale,
                                   rtol=1e-5)
    if not metric.startswith("entry"):
        tl = patch(model, "abcdefg", "abxdefg", backend="transformer_lens", **args)
        for c in ALL:
            torch.testing.assert_close(torch.tensor(fast.results[c]), torch.tensor(tl.results[c]), atol=1e-5, rtol=1e-5)
    grid = torch.tensor(fast.results["resid_pre"])
    assert (grid[0, :3] == fast.corrupted).all()  # identical tokens before the differing one: exactly corrupted
    if not metric.startswith("entry:1:0"):
        assert (grid - fast.corrupted).abs().max() > 1e-4  # and the grid is not trivially constant


def test_loss_metrics_are_independent_nlls(toy_llama):
    """loss:last / loss:P,Q equal NLLs computed here from plain logits; loss is their mean over all tokens."""
    from mi_massive.analyses.patch.run import _ids

    ids = _ids(toy_llama, "abxdefg", True)
    logp = torch.log_softmax(toy_llama(ids)[0].double(), -1)
    nll = torch.stack([-logp[t - 1, ids[0, t]] for t in range(1, ids.shape[1])])
    got = {m: patch(toy_llama, "abcdefg", "abxdefg", metric=m, components=["head"], prepend_bos=True,
                    progress=False).corrupted for m in ("loss", "loss:last", "loss:2,5")}
    assert got["loss"] == pytest.approx(nll.mean().item(), abs=1e-5)
    assert got["loss:last"] == pytest.approx(nll[-1].item(), abs=1e-5)
    assert got["loss:2,5"] == pytest.approx(((nll[1] + nll[4]) / 2).item(), abs=1e-5)
    with pytest.raises(MiMassiveError, match="cannot be scored"):
        patch(toy_llama, "abcdefg", "abxdefg", metric="loss:0", prepend_bos=True, progress=False)
    with pytest.raises(MiMassiveError, match="cannot read metric"):
        patch(toy_llama, "abcdefg", "abxdefg", metric="loss:x", prepend_bos=True, progress=False)


def test_top_cells_and_figures(toy_llama):
    from mi_massive.analyses.patch.figures import NORMALISATION, figures

    res = patch(toy_llama, "abcde", "abxde", metric="loss:last", components=["resid_pre", "head"], progress=False)
    top = res.top_cells(3)
    deltas = sorted((abs(v - res.corrupted) for g in res.results.values() for row in g for v in row), reverse=True)
    assert [abs(c["delta"]) for c in top] == pytest.approx(deltas[:3])
    cell = next(c for c in res.top_cells(100) if c["component"] == "resid_pre" and c["layer"] == 0 and c["index"] == 2)
    assert cell["where"] == "pos 2 'x' (clean 'c')" and cell["normalised"] == pytest.approx(1.0, abs=1e-4)
    fig = figures(res)["patch_resid_pre"]
    assert NORMALISATION in fig.data[0].colorbar.title.text
    assert list(fig.data[0].x)[2] == "2:'c'→'x'" and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
