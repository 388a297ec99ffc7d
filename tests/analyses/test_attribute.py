"""Exact attribution: planted writers are recovered exactly; per-head terms match plain HF hooks."""

from __future__ import annotations

import pytest
import torch

from hf_reference import hooked_forward
from mi_massive.analyses.attribute.decompose import AttributionMismatch, EntryTensors, decompose
from mi_massive.core.corpus import text_corpus
from mi_massive.core.loading import build_toy_hf, load_toy, model_info
from mi_massive.analyses.attribute.run import attribute

TEXTS = ["The cat sat on the mat.", "Summer is warm. Winter is cold."]


@pytest.mark.parametrize("kind", ["toy-gpt2", "toy-llama", "toy-gemma2", "toy-gemma3", "toy-olmo2", "toy-gpt-neox",
                                  "toy-gptj", "toy-falcon"])
def test_planted_writer_recovered_exactly(kind):
    """Pre-norm, post-norm (Gemma-2/3, OLMo-2) and parallel (GPT-NeoX, GPT-J, Falcon) blocks."""
    model = load_toy(kind, seed=3, plant=[(1, 5, 700.0)])
    planted = model_info(model).extra["planted"][0]
    corpus = text_corpus(model, TEXTS, prepend_bos=True)
    res = attribute(model, corpus, layer=2, position=0, dim=5)
    assert res.residual == pytest.approx(700.0, rel=1e-4)
    assert res.rel_error < 1e-4
    terms = {c.label: c.value for c in res.terms()}
    # by construction only MLP1 writes dim 5: every other term is exactly 0
    assert terms.pop("MLP1") == pytest.approx(700.0, rel=1e-4)
    assert max(abs(v) for v in terms.values()) == 0.0
    assert res.dominant_mlp == 1
    post_norm = kind in ("toy-gemma2", "toy-gemma3", "toy-olmo2")
    assert res.provenance["options"].get("linearised_norms") == (["ln1_post", "ln2_post"] if post_norm else None)
    assert ("frozen" in res.provenance["options"]["note"]) if post_norm else "note" not in res.provenance["options"]
    neurons = [c for c in res.contributions if c.kind == "neuron"]
    assert neurons[0].index == planted["neuron"]
    assert neurons[0].value == pytest.approx(700.0, rel=1e-4)  # through the frozen post-norm on Gemma/OLMo
    rest = [c for c in res.contributions if c.kind == "neuron_rest"][0]
    assert rest.value == 0.0
    # a position without the planted activation: everything is 0
    res1 = attribute(model, corpus, layer=2, position=3, dim=5)
    assert res1.residual == 0.0 and all(c.value == 0.0 for c in res1.contributions)


def test_head_terms_match_plain_hf_hooks():
    """Per-head writes from the bridge equal z_h @ o_proj.weight[d, h-slice] read by HF forward hooks."""
    kind, seed, layer, pos, dim = "toy-llama", 1, 2, 4, 11
    model = load_toy(kind, seed=seed)
    corpus = text_corpus(model, TEXTS[:1], prepend_bos=True)
    res = attribute(model, corpus, layer=layer, position=pos, dim=dim)
    hf = build_toy_hf(kind, seed=seed)  # same weights, never bridged
    seen = {}
    hooks = [hf.model.layers[l].self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, l=l: seen.__setitem__(("z", l), a[0][0, pos])) for l in range(layer + 1)]
    hooks += [hf.model.layers[l].mlp.down_proj.register_forward_hook(
        lambda m, a, o, l=l: seen.__setitem__(("mlp", l), o[0, pos, dim])) for l in range(layer + 1)]
    hooks.append(hf.model.layers[layer].register_forward_hook(
        lambda m, a, o: seen.__setitem__("resid", (o[0] if isinstance(o, tuple) else o)[0, pos, dim])))
    hooked_forward(hf, torch.tensor(corpus.sequences), hooks)
    dh = model.cfg.d_head
    terms = {c.label: c.value for c in res.terms()}
    for l in range(layer + 1):
        w = hf.model.layers[l].self_attn.o_proj.weight[dim]
        for h in range(model.cfg.n_heads):
            expected = float(seen[("z", l)][h * dh:(h + 1) * dh] @ w[h * dh:(h + 1) * dh])
            assert terms[f"L{l}H{h}"] == pytest.approx(expected, abs=1e-5, rel=1e-4)
        assert terms[f"MLP{l}"] == pytest.approx(float(seen[("mlp", l)]), abs=1e-5, rel=1e-4)
    assert res.residual == pytest.approx(float(seen["resid"]), abs=1e-5, rel=1e-5)
    assert sum(c.value for c in res.terms()) == pytest.approx(res.residual, rel=1e-4, abs=1e-5)


def test_mismatch_is_detected():
    t = EntryTensors(residual=10.0, embed=1.0, pos_embed=None, z=torch.ones(1, 2, 3), w_o=torch.ones(1, 2, 3),
                     b_o=torch.zeros(1), mlp_out=torch.tensor([2.0]), post=torch.ones(1, 4), w_out=torch.ones(1, 4),
                     b_out=torch.zeros(1))
    with pytest.raises(AttributionMismatch):
        decompose(t)  # 1 + 6 + 2 = 9 != 10
    t.residual = 9.0
    contribs, total, rel, dom = decompose(t)
    assert total == 9.0 and rel == 0.0 and dom == 0


def test_attribution_round_trip_and_table(tmp_path):
    import mi_massive as mm
    from mi_massive.analyses.attribute.record import AttributionResult, SequenceAttribution

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    res = mm.attribute(model, mm.text_corpus(model, ["The cat sat.", "A dog ran."], prepend_bos=True), 1, 0, 5)
    assert all(isinstance(p, SequenceAttribution) for p in res.per_sequence) and len(res.per_sequence) == 2
    again = AttributionResult.load(res.save(tmp_path / "attribution.json"))
    assert type(again) is AttributionResult and again == res
    assert list(res.to_dataframe().columns) == ["kind", "label", "value", "layer", "index"]


@pytest.mark.parametrize("kind", ["toy-gemma2", "toy-olmo2"])
def test_post_norm_terms_match_plain_hf(kind):
    """Through post-sublayer norms: head h's term is z_h . o_proj[d, h] times the norm's own output/input ratio
    at d, and MLP l's term is the post-MLP norm's output at d, all read from a never-bridged HF model."""
    seed, layer, pos, dim = 2, 1, 4, 11
    model = load_toy(kind, seed=seed)
    corpus = text_corpus(model, TEXTS[:1], prepend_bos=True)
    res = attribute(model, corpus, layer=layer, position=pos, dim=dim)
    hf = build_toy_hf(kind, seed=seed)
    seen = {}
    hooks = []
    for l in range(layer + 1):
        blk = hf.model.layers[l]
        hooks.append(blk.self_attn.o_proj.register_forward_pre_hook(
            lambda m, a, l=l: seen.__setitem__(("z", l), a[0][0, pos])))
        hooks.append(blk.post_attention_layernorm.register_forward_hook(
            lambda m, a, o, l=l: seen.__setitem__(("attn_norm", l), (a[0][0, pos, dim], o[0, pos, dim]))))
        hooks.append(blk.post_feedforward_layernorm.register_forward_hook(
            lambda m, a, o, l=l: seen.__setitem__(("mlp", l), o[0, pos, dim])))
    hooked_forward(hf, torch.tensor(corpus.sequences), hooks)
    dh = model.cfg.d_head
    terms = {c.label: c.value for c in res.terms()}
    for l in range(layer + 1):
        x, y = seen[("attn_norm", l)]
        ratio = float(y) / float(x)
        w = hf.model.layers[l].self_attn.o_proj.weight[dim]
        for h in range(model.cfg.n_heads):
            expected = float(seen[("z", l)][h * dh:(h + 1) * dh] @ w[h * dh:(h + 1) * dh]) * ratio
            assert terms[f"L{l}H{h}"] == pytest.approx(expected, abs=1e-5, rel=1e-3)
        assert terms[f"MLP{l}"] == pytest.approx(float(seen[("mlp", l)]), abs=1e-5, rel=1e-4)
    assert sum(terms.values()) == pytest.approx(res.residual, rel=1e-4, abs=1e-6)


def test_refusal_is_one_line_naming_the_architecture():
    """A decomposition that does not add up within the tolerance is a one-line user error, not a traceback."""
    from mi_massive.errors import MiMassiveError

    model = load_toy("toy-gemma2", seed=2)
    corpus = text_corpus(model, TEXTS[:1], prepend_bos=True)
    with pytest.raises(MiMassiveError) as err:
        attribute(model, corpus, layer=1, position=4, dim=11, tolerance=1e-30)  # no float sum is that exact
    msg = str(err.value)
    assert "\n" not in msg and "Gemma2ForCausalLM" in msg and "cannot be decomposed exactly" in msg


def test_command_says_norms_are_linearised(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    args = ["attribute", "--model", "toy-gemma2", "--text", "The cat sat on the mat.", "--prepend-bos",
            "--layer", "1", "--dim", "11", "--position", "3"]
    ok = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    assert "post-sublayer norms (ln1_post, ln2_post) linearised at the RMS scale this forward used" in ok.output
    from mi_massive.analyses.attribute.record import AttributionResult

    saved = AttributionResult.load(tmp_path / "a" / "attribution.json")
    assert saved.rel_error < 1e-4 and "frozen" in saved.provenance["options"]["note"]
