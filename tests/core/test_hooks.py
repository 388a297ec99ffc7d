"""Ablation / patching / attention-edit hooks change exactly the intended components."""

from __future__ import annotations

import einops
import pytest
import torch

from mi_massive.core.corpus import text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks import (ablate_attention, ablate_heads, ablate_mlps, ablate_neurons, block_keys, parse_heads,
                              per_row_head_ablation, reference_means, resample_donors)
from mi_massive.core.engine import run_capture

TEXTS = ["The cat sat on the mat.", "A dog ran far in the park!", "Summer is warm. Winter is cold."]


def _ids(model, texts=TEXTS):
    corpus = text_corpus(model, texts, prepend_bos=True)
    n = min(corpus.lengths)
    corpus.sequences = [s[:n] for s in corpus.sequences]  # equal lengths: no padding
    return corpus, torch.tensor(corpus.sequences)


@pytest.mark.parametrize("fixture", ["toy_gpt2", "toy_llama"])
def test_zero_head_touches_only_that_head(request, fixture):
    model = request.getfixturevalue(fixture)
    _, ids = _ids(model)
    names = ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "blocks.1.hook_attn_out"]
    _, clean = run_capture(model, ids, names)
    _, abl = run_capture(model, ids, names, fwd_hooks=ablate_heads(model, [(1, 1)]))
    z, z0 = abl["blocks.1.attn.hook_z"], clean["blocks.1.attn.hook_z"]
    assert z[:, :, 1].abs().max() == 0
    others = [h for h in range(model.cfg.n_heads) if h != 1]
    assert torch.equal(z[:, :, others], z0[:, :, others])  # GQA: heads sharing head 1's KV head untouched
    assert torch.equal(abl["blocks.0.attn.hook_z"], clean["blocks.0.attn.hook_z"])
    # the attention output drops by exactly head 1's write z_1 @ W_O[1, 1]
    drop = clean["blocks.1.hook_attn_out"] - abl["blocks.1.hook_attn_out"]
    expected = z0[:, :, 1] @ model.W_O[1, 1].detach()
    torch.testing.assert_close(drop, expected, atol=1e-5, rtol=1e-4)


def test_mean_and_resample_heads(toy_llama):
    model = toy_llama
    corpus, ids = _ids(model)
    name = "blocks.2.attn.hook_z"
    _, clean = run_capture(model, ids, [name])
    means = reference_means(model, corpus, [name])
    z = clean[name]
    # independent means: position 0 and the rest, pooled over sequences (equal lengths here)
    torch.testing.assert_close(means[name][0], z[:, 0].mean(0))
    torch.testing.assert_close(means[name][1], z[:, 1:].reshape(-1, *z.shape[2:]).mean(0))
    _, got = run_capture(model, ids, [name], fwd_hooks=ablate_heads(model, [(2, 3)], "mean", means=means))
    assert torch.equal(got[name][:, 0, 3], means[name][0, 3].expand(3, -1))
    assert torch.equal(got[name][:, 5, 3], means[name][1, 3].expand(3, -1))
    assert torch.equal(got[name][:, :, :3], z[:, :, :3])
    donor_idx, donors = resample_donors(model, corpus, [name], seed=1)
    assert all(d != i for i, d in enumerate(donor_idx))
    _, got = run_capture(model, ids, [name], fwd_hooks=ablate_heads(model, [(2, 0)], "resample", donors=donors))
    for i, d in enumerate(donor_idx):
        torch.testing.assert_close(got[name][i, :, 0], z[d, :, 0])
        torch.testing.assert_close(got[name][i, :, 1:], z[i, :, 1:])


def test_sublayer_and_neuron_ablation(toy_gpt2):
    model = toy_gpt2
    _, ids = _ids(model)
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_attn_out",
             "blocks.1.hook_mlp_out", "blocks.1.mlp.hook_post"]
    _, clean = run_capture(model, ids, names)
    _, a = run_capture(model, ids, names, fwd_hooks=ablate_attention(model, [1]))
    assert a["blocks.1.hook_attn_out"].abs().max() == 0  # b_O removed as well
    torch.testing.assert_close(a["blocks.1.hook_resid_mid"], a["blocks.1.hook_resid_pre"])
    # all heads zeroed at hook_z keeps b_O: attn_out == b_O everywhere
    _, h = run_capture(model, ids, names, fwd_hooks=ablate_heads(model, [(1, i) for i in range(4)]))
    torch.testing.assert_close(h["blocks.1.hook_attn_out"], model.b_O[1].detach().expand_as(h["blocks.1.hook_attn_out"]))
    _, m = run_capture(model, ids, names, fwd_hooks=ablate_mlps(model, [1]))
    assert m["blocks.1.hook_mlp_out"].abs().max() == 0
    torch.testing.assert_close(m["blocks.1.hook_attn_out"], clean["blocks.1.hook_attn_out"])
    _, n = run_capture(model, ids, names, fwd_hooks=ablate_neurons(model, {1: [7, 9]}))
    post, post0 = n["blocks.1.mlp.hook_post"], clean["blocks.1.mlp.hook_post"]
    assert post[..., [7, 9]].abs().max() == 0
    keep = [i for i in range(post.shape[-1]) if i not in (7, 9)]
    assert torch.equal(post[..., keep], post0[..., keep])
    drop = clean["blocks.1.hook_mlp_out"] - n["blocks.1.hook_mlp_out"]
    expected = post0[..., [7, 9]] @ model.W_out[1, [7, 9]].detach()
    torch.testing.assert_close(drop, expected, atol=1e-5, rtol=1e-4)


def test_block_keys_renormalises(toy_llama):
    """Blocking key 0 gives z = renormalised pattern @ v (computed here by hand, GQA repeat)."""
    model = toy_llama
    _, ids = _ids(model)
    L = 1
    names = [f"blocks.{L}.attn.hook_pattern", f"blocks.{L}.attn.hook_v", f"blocks.{L}.attn.hook_z"]
    _, clean = run_capture(model, ids, names)
    _, got = run_capture(model, ids, names, fwd_hooks=block_keys(model, [0], layers=[L]))
    p0 = clean[names[0]]
    pat = got[names[0]]
    assert pat[:, :, 1:, 0].abs().max() == 0
    torch.testing.assert_close(pat.sum(-1), torch.ones_like(pat.sum(-1)))
    torch.testing.assert_close(pat[:, :, 0], p0[:, :, 0])  # query 0 cannot be renormalised: unchanged
    manual = p0.clone()
    manual[:, :, 1:, 0] = 0
    manual = manual / manual.sum(-1, keepdim=True)
    v = einops.repeat(clean[names[1]], "b k g d -> b k (g r) d", r=model.cfg.n_heads // model.cfg.n_key_value_heads)
    z = torch.einsum("bhqk,bkhd->bqhd", manual, v)
    torch.testing.assert_close(got[names[2]], z, atol=1e-5, rtol=1e-4)


def test_per_row_batch_equals_separate_runs(toy_llama):
    model = toy_llama
    _, ids = _ids(model, TEXTS[:1])
    heads = torch.tensor([0, 1, 2, 3, -1])
    name = "blocks.2.hook_resid_post"
    _, batched = run_capture(model, ids.expand(5, -1), [name], fwd_hooks=per_row_head_ablation(1, heads))
    for i, h in enumerate(heads.tolist()):
        hooks = ablate_heads(model, [(1, h)]) if h >= 0 else []
        _, one = run_capture(model, ids, [name], fwd_hooks=hooks)
        torch.testing.assert_close(batched[name][i], one[name][0], atol=1e-4, rtol=1e-5)


def test_bad_inputs(toy_gpt2):
    with pytest.raises(MiMassiveError, match="out of range"):
        ablate_heads(toy_gpt2, [(7, 0)])
    with pytest.raises(MiMassiveError, match="head 4 out of range"):
        ablate_heads(toy_gpt2, [(0, 4)])
    with pytest.raises(MiMassiveError, match="empty head set"):
        ablate_heads(toy_gpt2, [])
    with pytest.raises(MiMassiveError, match="unknown ablation mode"):
        ablate_mlps(toy_gpt2, [0], mode="shuffle")
    with pytest.raises(MiMassiveError, match="empty key set"):
        block_keys(toy_gpt2, [])
    with pytest.raises(MiMassiveError, match="cannot read head"):
        parse_heads("5-1")
    assert parse_heads("5.1, L6H2") == [(5, 1), (6, 2)]
    _, ids = _ids(toy_gpt2)
    with pytest.raises(MiMassiveError, match="needs reference means"):
        run_capture(toy_gpt2, ids, ["blocks.0.hook_resid_post"], fwd_hooks=ablate_heads(toy_gpt2, [(0, 0)], "mean"))
