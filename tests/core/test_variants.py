"""Variants on toy GPT-2 and Llama: the bridge computes what the patched HF model computes (and not the unpatched one).

The trap these tests guard against: a TransformerBridge recomputes attention and normalisation itself, so a
change made only to the HF modules is silently ignored by the bridge. Every variant is checked on both
sides: bridge logits == patched HF logits, and != unpatched HF logits.
"""

from __future__ import annotations

import copy

import pytest
import torch

from mi_massive.core.loading import build_toy_hf, toy_tokenizer
from mi_massive.core.variants import (DyT, TVRConfig, VariantSpec, apply_variant, bridge_variant, set_dyt_activation,
                                 set_kv_bias_masked, tvr_rescale)

KINDS = ("toy-gpt2", "toy-llama")
VARIANTS = ("kv_bias", "dyt", "register", "kv_bias+dyt+register")
IDS = torch.tensor([[0, 84, 104, 101, 32, 99, 97, 116, 32, 115, 97, 116, 46],
                    [0, 65, 32, 100, 111, 103, 32, 114, 97, 110, 32, 105, 110]])
TOL = 1e-5


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def bases():
    return {k: build_toy_hf(k, seed=0) for k in KINDS}


def _logits(hf, ids=IDS, **kw):
    with torch.no_grad():
        return hf(ids, **kw).logits


def _variant(base, name, seed=1, *, scale=None):
    hf = apply_variant(copy.deepcopy(base), VariantSpec.parse(name), seed=seed)
    if scale:  # make the new parameters large enough that every check is far from rounding
        with torch.no_grad():
            for n, p in hf.named_parameters():
                if n.endswith(("k_bias", "v_bias", "register_vector")):
                    p.mul_(scale)
    return hf


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", VARIANTS)
def test_bridge_equals_patched_hf_and_differs_from_unpatched(bases, tok, kind, name):
    base = bases[kind]
    hf = _variant(base, name, scale=50.0)
    patched, unpatched = _logits(hf), _logits(base)
    bridge = bridge_variant(hf, tok, name=name)
    with torch.no_grad():
        out = bridge(IDS)
    assert (out - patched).abs().max().item() < TOL
    assert (out - unpatched).abs().max().item() > 1e-2
    assert (patched - unpatched).abs().max().item() > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_kv_bias_hooks_show_the_bias_slot(bases, tok, kind):
    hf = _variant(bases[kind], "kv_bias", scale=50.0)
    bridge = bridge_variant(hf, tok, name="kv_bias")
    cfg = bridge.cfg
    n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    with torch.no_grad():
        _, cache = bridge.run_with_cache(IDS, names_filter=lambda n: n.startswith("blocks.0.attn."))
    b, p = IDS.shape
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (b, cfg.n_heads, p, p + 1)  # key column 0 = bias slot
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (b, cfg.n_heads, p, p + 1)
    assert cache["blocks.0.attn.hook_k"].shape == (b, p, n_kv, cfg.d_head)  # real keys only
    assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5)
    assert (pattern[..., 0] > 0).all()  # every query sees the slot
    assert torch.isinf(cache["blocks.0.attn.hook_attn_scores"][0, 0, 0, 2])  # causal among real keys
    # HF returns the same attention weights (including the slot column)
    with torch.no_grad():
        hf_pattern = hf(IDS, output_attentions=True).attentions[0]
    assert torch.allclose(hf_pattern, pattern, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_kv_bias_with_masked_slot_reproduces_unpatched(bases, tok, kind):
    base = bases[kind]
    hf = _variant(base, "kv_bias", scale=50.0)
    bridge = bridge_variant(hf, tok, name="kv_bias")
    ref = _logits(base)
    set_kv_bias_masked(hf, True)
    set_kv_bias_masked(bridge, True)
    with torch.no_grad():
        hf_out, br_out = _logits(hf), bridge(IDS)
    # equal up to float32 summation order (GPT-2 is bit-identical; Llama differs by <= 2e-7)
    assert (hf_out - ref).abs().max().item() <= 1e-6
    assert (br_out - ref).abs().max().item() <= 1e-6
    # v' = 0 and k' very negative along q: same result in the HF model
    set_kv_bias_masked(hf, False)
    assert (_logits(hf) - ref).abs().max().item() > 1e-2
    with torch.no_grad():
        for m in hf.modules():
            if hasattr(m, "v_bias"):
                m.v_bias.zero_()
                m.k_bias.zero_()
    # k' = v' = 0: the slot takes softmax mass but contributes nothing; it only rescales the others
    assert (_logits(hf) - ref).abs().max().item() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_kv_bias_left_padding_matches_single_runs(bases, tok, kind):
    hf = _variant(bases[kind], "kv_bias", scale=50.0)
    bridge = bridge_variant(hf, tok, name="kv_bias")
    row = IDS[:1, :10]
    ids = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), row[:, :7]], 1), row])
    mask = torch.tensor([[0, 0, 0] + [1] * 7, [1] * 10])
    with torch.no_grad():
        out = bridge(ids, attention_mask=mask)
    single = _logits(hf, row[:, :7])
    assert (out[0, 3:] - single[0]).abs().max().item() < 1e-4
    assert (out[1] - _logits(hf, row)[0]).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_dyt_identity_equals_model_without_norms(bases, tok, kind):
    base = bases[kind]
    hf = _variant(base, "dyt")
    bridge = bridge_variant(hf, tok, name="dyt")
    with torch.no_grad():
        for m in hf.modules():
            if isinstance(m, DyT):
                m.alpha.fill_(1.0)
                m.weight.fill_(1.0)
                m.bias.zero_()
        for m in bridge.original_model.modules():
            if isinstance(m, DyT):
                m.alpha.fill_(1.0)
                m.weight.fill_(1.0)
                m.bias.zero_()
    set_dyt_activation(hf, "identity")
    set_dyt_activation(bridge, "identity")
    no_norm = copy.deepcopy(base)
    from mi_massive.core.variants.dyt import norm_slots

    for parent, attr, _ in norm_slots(no_norm):
        setattr(parent, attr, torch.nn.Identity())
    ref = _logits(no_norm)
    assert torch.allclose(_logits(hf), ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert torch.allclose(bridge(IDS), ref, atol=1e-4, rtol=1e-5)
    # structure: every norm slot is a DyT and the bridge's ln hooks expose tanh/identity(alpha x)
    assert sum(isinstance(m, DyT) for m in hf.modules()) == 2 * bridge.cfg.n_layers + 1
    set_dyt_activation(bridge, "tanh")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(IDS, names_filter=lambda n: n.startswith("blocks.1.ln1."))
    assert torch.allclose(cache["blocks.1.ln1.hook_normalized"], torch.tanh(cache["blocks.1.ln1.hook_in"]), atol=1e-6)


def test_tvr_rescales_exactly_the_over_threshold_matrices(bases):
    hf = copy.deepcopy(bases["toy-gpt2"])
    cfg = TVRConfig(target_std=0.01, ratio_threshold=1.2)
    from mi_massive.core.variants.tvr import block_matrices, decoder_blocks

    mats = [(l, n, m) for l, blk in enumerate(decoder_blocks(hf)) for n, m in block_matrices(blk)]
    assert len(mats) == 4 * hf.config.n_layer
    with torch.no_grad():  # make some matrices small (below threshold) and one exactly at 1.1 x target
        mats[0][2].weight.mul_(0.01 / mats[0][2].weight.std() * 0.5)
        mats[1][2].weight.mul_(0.01 / mats[1][2].weight.std() * 1.1)
        for _, _, m in mats:
            m.bias.add_(0.3)
    before = {n: p.detach().clone() for n, p in hf.named_parameters()}
    over = {f"{l}.{n}" for l, n, m in mats if m.weight.std().item() > 1.2 * 0.01}
    assert 0 < len(over) < len(mats) - 2  # GPT-2 init: c_attn/c_fc 0.02 (over), c_proj 0.02/sqrt(2L) (under)
    records = tvr_rescale(hf, cfg)
    after = dict(hf.named_parameters())
    assert {r.name for r in records if r.rescaled} == over
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    for l, n, m in mats:
        key = f"transformer.h.{l}.{n}"
        if f"{l}.{n}" in over:
            assert abs(m.weight.std().item() - 0.01) < 1e-6
            assert abs(m.weight.mean().item() - before[key + ".weight"].mean().item()) < 1e-7
            assert torch.count_nonzero(m.bias) == 0
        else:
            assert key + ".weight" not in changed and key + ".bias" not in changed
    assert all(n.startswith("transformer.h.") and n.endswith((".weight", ".bias")) and
               not any(s in n for s in ("ln_", "wte", "wpe")) for n in changed)
    # depth scaling: block l gets target / sqrt(l)
    deep = tvr_rescale(copy.deepcopy(bases["toy-llama"]), TVRConfig(target_std=0.01, scale_with_depth=True))
    assert {round(r.target, 6) for r in deep if r.layer == 2} == {round(0.01 / 3 ** 0.5, 6)}


def test_tvr_hybrids_and_spec_names():
    assert VariantSpec.parse("kv_bias+tvr").name == "tvr+kv_bias"
    assert VariantSpec.parse("TVR+DyT").name == "tvr+dyt"
    assert VariantSpec.parse("baseline").name == "baseline"
    spec = VariantSpec.parse("tvr+kv_bias", tvr=TVRConfig(interval=10))
    assert VariantSpec.from_dict(spec.to_dict()) == spec
    from mi_massive.errors import MiMassiveError

    with pytest.raises(MiMassiveError):
        VariantSpec.parse("kv_bais")


@pytest.mark.parametrize("kind", KINDS)
def test_register_occupies_the_bos_slot(bases, tok, kind):
    hf = _variant(bases[kind], "register", scale=50.0)
    bridge = bridge_variant(hf, tok, name="register")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(IDS, names_filter="hook_embed")
    emb = hf.get_input_embeddings()
    assert torch.equal(cache["hook_embed"][:, 0], emb.register_vector.expand(2, -1))
    assert torch.equal(cache["hook_embed"][:, 1:], emb.weight[IDS[:, 1:]])


def test_dyt_per_norm_alpha0_llama_recipe(bases):
    from mi_massive.core.variants import DyTAlpha
    from mi_massive.core.variants.dyt import norm_slots

    hf = apply_variant(copy.deepcopy(bases["toy-llama"]), VariantSpec.parse("dyt", dyt_alpha=DyTAlpha(attn=0.8, mlp=0.2,
                                                                                                   final=0.2)))
    alphas = {kind: {round(getattr(p, a).alpha.item(), 6) for p, a, k in norm_slots(hf) if k == kind}
              for kind in ("attn", "mlp", "final")}
    assert alphas == {"attn": {0.8}, "mlp": {0.2}, "final": {0.2}}
