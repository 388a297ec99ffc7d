"""MLP internals: per-neuron contributions sum to the MLP output's massive value (hand-derived toys)."""

from __future__ import annotations

import json

import pytest
import torch

from mi_massive.analyses.mlp.neurons import neuron_contributions
from mi_massive.core.corpus import load_corpus
from mi_massive.core.loading import load_toy, model_info
from mi_massive.analyses.mlp import Checkpoint, MlpResult, figures, mlp
from mi_massive.analyses.mlp.run import b_out, capture_layer, mlp_internals
from mi_massive.core.engine import run_capture


@pytest.fixture(scope="module", params=["toy-gpt2", "toy-llama"])
def planted(request):
    bridge = load_toy(request.param, plant=[(1, 5, 500.0)])
    corpus = load_corpus(bridge, "builtin", n_samples=3, seq_len=24, prepend_bos=True)
    return bridge, corpus


def test_planted_neuron_carries_the_massive_value(planted):
    bridge, corpus = planted
    info = model_info(bridge).extra["planted"][0]
    r = mlp_internals(bridge, corpus)  # layer and dim found by the scan / largest |h|
    assert (r.layer, r.dim) == (1, 5)
    assert r.contributions.n_massive_tokens == 3 and r.contributions.n_neurons_50 == 1
    assert r.contributions.n_neurons_90 == 1
    top = r.contributions.top_neurons[0]
    assert top.neuron == info["neuron"] and top.massive == pytest.approx(500.0, rel=1e-5)
    assert top.ordinary_max_abs == 0.0  # the planted neuron never fires elsewhere
    assert r.check.massive_mlp_out_mean == pytest.approx(500.0, rel=1e-5)
    assert r.check.max_abs_error < 1e-3 and r.check.mlp_share_of_resid == pytest.approx(1.0, rel=1e-5)
    labels = [c.label for c in r.checkpoints]
    assert any("hook_pre_linear" in label for label in labels) == r.gated
    assert r.checkpoints[-1].massive_token_max == pytest.approx(500.0, rel=1e-5)
    assert (top.up_massive is not None) == r.gated  # gated MLPs only: the up projection


def test_mlp_record_round_trip_and_table(planted, tmp_path):
    bridge, corpus = planted
    r = mlp(bridge, corpus, top_k=5)
    saved = json.loads(r.save(tmp_path / "mlp.json").read_text())
    assert ("up_massive" in saved["contributions"]["top_neurons"][0]) == r.gated  # absent, not null, when not gated
    back = MlpResult.load(tmp_path / "mlp.json")
    assert isinstance(back, MlpResult) and isinstance(back.checkpoints[0], Checkpoint)
    assert back.contributions.top_neurons[0] == r.contributions.top_neurons[0]
    df = back.to_dataframe()
    assert len(df) == 5 and list(df.columns[:4]) == ["neuron", "massive", "w_out", "post_massive"]
    assert "mlp_flow" in figures(back) and "MlpResult(" in repr(back)


def test_contributions_sum_to_mlp_out_for_every_token_and_dim(toy_gpt2):
    """Unplanted GPT-2 with a non-zero b_out: sum_n post[t,n] W_out[n,d] + b_out[d] == hook_mlp_out[t,d]."""
    with torch.no_grad():
        toy_gpt2.original_model.transformer.h[2].mlp.c_proj.bias.fill_(0.25)
    try:
        ids = torch.tensor([[0, 70, 71, 72, 73, 74]])
        _, acts = run_capture(toy_gpt2, ids, ["blocks.2.mlp.hook_post", "blocks.2.hook_mlp_out"])
        post, out = acts["blocks.2.mlp.hook_post"][0], acts["blocks.2.hook_mlp_out"][0]
        bias = b_out(toy_gpt2, 2)
        assert torch.allclose(bias, torch.full_like(bias, 0.25))
        for d in (0, 17, 63):
            c = neuron_contributions(post, toy_gpt2.W_out[2, :, d].float())
            assert torch.allclose(c.sum(1) + bias[d], out[:, d], atol=1e-5)
    finally:
        with torch.no_grad():
            toy_gpt2.original_model.transformer.h[2].mlp.c_proj.bias.zero_()


def test_capture_drops_pads_and_flags_massive(planted):
    bridge, _ = planted
    from mi_massive.core.corpus import text_corpus

    corpus = text_corpus(bridge, ["ab", "abcdef"], prepend_bos=True)
    cap = capture_layer(bridge, corpus, 1, ["blocks.1.mlp.hook_post"])
    assert len(cap.seq) == 3 + 7  # real tokens only
    assert cap.massive[:, 5].tolist() == [p == 0 for p in cap.pos.tolist()]
