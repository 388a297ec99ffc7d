"""Vision transformers: toy ViT (classifier head) and toy DINOv2 with registers, checked against plain transformers.

Every reference here is the plain Hugging Face model of the same seed (and plant), run with ``output_hidden_states``
/ ``output_attentions`` or edited with torch forward hooks; the package's wrapper is never involved.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mi_massive as mm
from mi_massive.analyses.heads.run import vision_heads
from mi_massive.core.corpus.images import IMAGE_KINDS, image_corpus, synthetic_images
from mi_massive.core.loading.vit import (VISION_TOYS, build_vision_toy_hf, load_vision, plant_vision_massive,
                                         vision_from_hf)
from mi_massive.errors import MiMassiveError

PLANTS = {"toy-vit": (1, 6, 5, 20000.0), "toy-vit-reg": (1, 7, 5, 20000.0)}  # (layer, position, dim, value)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny toys (tests/conftest.py)


def _hf(kind: str, plant=None, seed: int = 0):
    hf = build_vision_toy_hf(kind, seed=seed)
    if plant is not None:
        plant_vision_massive(hf, *plant)
    return hf


def _pixels(model, corpus) -> torch.Tensor:
    """The normalised images behind a corpus (image id = first token id // n_tokens)."""
    return torch.stack([model.images[seq[0] // model.cfg.n_tokens] for seq in corpus.sequences])


def _hf_run(hf, pixels, handles=()):
    try:
        with torch.no_grad():
            return hf(pixel_values=pixels, output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()


def test_synthetic_images_are_deterministic():
    a, kinds = synthetic_images(7, size=16, seed=3)
    b, _ = synthetic_images(7, size=16, seed=3)
    assert torch.equal(a, b) and kinds == [IMAGE_KINDS[i % 5] for i in range(7)]
    assert not torch.equal(a, synthetic_images(7, size=16, seed=4)[0])
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


@pytest.mark.parametrize("kind", VISION_TOYS)
def test_positions_are_labelled(kind):
    model = load_vision(kind)
    cfg = model.cfg
    assert (cfg.n_tokens, cfg.n_registers) == ((21, 4) if kind == "toy-vit-reg" else (17, 0))
    labels = [model.tokenizer.decode([p]) for p in range(cfg.n_tokens)]
    assert labels[0] == "[CLS]" and labels[cfg.n_prefix] == "patch(0,0)" and labels[-1] == "patch(3,3)"
    assert labels[1:cfg.n_prefix] == [f"[REG{i}]" for i in range(cfg.n_registers)]


@pytest.mark.parametrize("kind", VISION_TOYS)
def test_scan_equals_hf_hidden_states(kind):
    model = load_vision(kind, seed=2)
    corpus = image_corpus(model, n_images=3)
    res = mm.scan(model, corpus, progress=False)
    hidden = _hf_run(_hf(kind, seed=2), _pixels(model, corpus)).hidden_states  # [embeddings, block 0, ...]
    for layer in range(-1, model.cfg.n_layers):
        stats = next(r for r in res.layers if r.layer == layer)
        for seq in range(3):
            a = hidden[layer + 1][seq].abs().flatten().double().numpy()
            np.testing.assert_allclose(stats.per_sequence.top_values[seq], np.sort(a)[::-1][:3], rtol=1e-5)
            np.testing.assert_allclose(stats.per_sequence.median[seq], np.median(a), rtol=1e-5)


@pytest.mark.parametrize("kind", VISION_TOYS)
def test_planted_patch_is_detected_exactly(kind):
    layer, pos, dim, value = PLANTS[kind]
    model = load_vision(kind, plant=[PLANTS[kind]])
    corpus = image_corpus(model, n_images=4)
    res = mm.scan(model, corpus, progress=False)
    found = {(e.layer, e.sequence, e.position, e.dim) for e in res.massive}
    assert found == {(lyr, s, pos, dim) for lyr in range(layer, model.cfg.n_layers) for s in range(4)}
    hidden = _hf_run(_hf(kind, PLANTS[kind]), _pixels(model, corpus)).hidden_states
    for e in res.massive:
        assert e.value == pytest.approx(float(hidden[e.layer + 1][e.sequence, pos, dim]), rel=1e-6)
        assert e.value == pytest.approx(value, rel=2e-3)  # calibrated on a grey image
        assert e.token == model.tokenizer.label(pos) and e.token.startswith("patch(")
    assert res.summary.first_layer == layer and res.summary.tokens[0].token == model.tokenizer.label(pos)
    for other in range(model.cfg.n_tokens):  # every other token holds exactly 0 in the planted dim
        if other != pos:
            assert float(hidden[layer + 1][:, other, dim].abs().max()) == 0.0


@pytest.mark.parametrize("kind", VISION_TOYS)
def test_head_shares_equal_hf_attention(kind):
    plant = PLANTS[kind]
    model = load_vision(kind, plant=[plant])
    corpus = image_corpus(model, n_images=2)
    shares = vision_heads(model, corpus)
    att = _hf_run(_hf(kind, plant), _pixels(model, corpus)).attentions
    groups = {"cls": [0], "registers": list(range(1, model.cfg.n_prefix)), "massive_patches": [plant[1]]}
    assert set(shares) == ({"cls", "registers", "massive_patches"} if kind == "toy-vit-reg" else
                           {"cls", "massive_patches"})
    for name, scores in shares.items():
        for h in scores.heads:
            want = att[h.layer][:, h.head, 1:, groups[name]].sum(-1).mean(-1).double().numpy()  # [image]
            np.testing.assert_allclose(scores.per_sequence_massive[h.layer][h.head], want, rtol=1e-5, atol=1e-7)
            assert h.to_first == pytest.approx(float(att[h.layer][:, h.head, 1:, 0].mean()), rel=1e-5)


@pytest.mark.parametrize("kind", VISION_TOYS)
def test_intervention_equals_hand_edited_forward(kind):
    layer, pos, dim, _ = PLANTS[kind]
    model = load_vision(kind, plant=[PLANTS[kind]])
    ev, cal = mm.split_corpus(image_corpus(model, n_images=6), 3)
    res = mm.intervene(model, ev, cal, n_control=2, n_boot=50)
    assert [(t.dim, t.layer) for t in res.targets] == [(dim, layer)]
    assert res.targets[0].positions == {str(i): [pos] for i in range(3)}
    assert res.positions_kind == {"cls": 0, "register": 0, "patch": 3}
    hf = _hf(kind, PLANTS[kind])
    pixels = _pixels(model, ev)

    def zero(_m, _i, out):
        h = (out[0] if isinstance(out, tuple) else out).clone()
        h[:, pos, dim] = 0.0
        return (h, *out[1:]) if isinstance(out, tuple) else h
    clean = _hf_run(hf, pixels)
    edited = _hf_run(hf, pixels, [list(hf.modules())[0].get_submodule(
        "encoder.layer" if kind == "toy-vit-reg" else "vit.layers")[layer].register_forward_hook(zero)])
    if kind == "toy-vit":  # classifier head: KL(p_clean || p_edited) per image
        assert res.metric == "kl"
        lp, lq = torch.log_softmax(clean.logits.double(), -1), torch.log_softmax(edited.logits.double(), -1)
        want = (lp.exp() * (lp - lq)).sum(-1)
    else:  # bare encoder: relative change of the final (normalised) CLS representation
        assert res.metric == "rep_change"
        z, z2 = clean.last_hidden_state[:, 0].double(), edited.last_hidden_state[:, 0].double()
        want = (z2 - z).norm(dim=-1) / z.norm(dim=-1)
    np.testing.assert_allclose(res.run("zero").per_image, want.numpy(), rtol=1e-4, atol=1e-9)
    assert res.run("original").mean == 0.0 and res.run("zero").mean > 0.0
    assert all(res.run(f"control {s}").mean < res.run("zero").mean for s in range(2))
    assert "proxy" in res.metric_note


def test_language_analyses_refuse_vision_models_in_one_line():
    model = load_vision("toy-vit-reg", plant=[PLANTS["toy-vit-reg"]])
    corpus = image_corpus(model, n_images=2)
    ids = torch.tensor(corpus.sequences[:1])
    calls = {
        "ablate": lambda: mm.ablate(model, corpus, heads="L1H0", n_null=0),
        "attribute": lambda: mm.attribute(model, corpus, 2, 7, 5),
        "sweep": lambda: mm.sweep(model, corpus, [(2, 7, 5)], progress=False),
        "patch": lambda: mm.patch(model, "abcde", "abxde", progress=False),
        "patch ids": lambda: mm.patch(model, ids, ids, metric="entry:2:3:7", progress=False),
        "mlp": lambda: mm.mlp(model, corpus),
        "svd": lambda: mm.svd(model, corpus),
        "tokens": lambda: mm.tokens(model, corpus),
        "attention": lambda: mm.attention(model, corpus),
    }
    for name, call in calls.items():
        with pytest.raises(MiMassiveError) as err:
            call()
        text = str(err.value)
        assert "\n" not in text and "vision model" in text and "scan, heads" in text, (name, text)


def test_local_directory_loads_through_the_hub_path(tmp_path):
    """Hub names and local directories share load_vision_hf + vision_from_hf with the toys: a saved toy ViT and a
    saved CLIP vision tower (CLS, pre-norm, post-norm on the pooled output only) load by path, offline."""
    import transformers

    hf = _hf("toy-vit", PLANTS["toy-vit"])
    hf.save_pretrained(tmp_path / "vit")
    model = mm.load_model(str(tmp_path / "vit"))
    assert type(model).__name__ == "VisionModel" and model.cfg.n_classes == 5
    corpus = image_corpus(model, n_images=2)
    with torch.no_grad():
        want = hf(pixel_values=_pixels(model, corpus)).logits
    torch.testing.assert_close(model(torch.tensor(corpus.sequences)), want, rtol=0, atol=1e-5)
    res = mm.scan(model, corpus, progress=False)
    assert {(e.position, e.dim) for e in res.massive} == {(6, 5)}

    torch.manual_seed(0)
    clip = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
        patch_size=8, attn_implementation="eager")).eval()
    clip.save_pretrained(tmp_path / "clip")
    vm = mm.load_model(str(tmp_path / "clip"))
    assert (vm.cfg.architecture, vm.cfg.n_tokens, vm.cfg.n_classes) == ("CLIPVisionModel", 17, 0)
    corpus = image_corpus(vm, n_images=2)
    with torch.no_grad():
        out = clip(pixel_values=_pixels(vm, corpus), output_hidden_states=True)
    torch.testing.assert_close(vm(torch.tensor(corpus.sequences)), clip.post_layernorm(out.last_hidden_state))
    res = mm.scan(vm, corpus, progress=False)
    top = next(r for r in res.layers if r.layer == 1).per_sequence.top_values[0][0]
    assert top == pytest.approx(float(out.hidden_states[2][0].abs().max()), rel=1e-6)


def test_wrapper_rejects_ids_that_name_no_image():
    model = vision_from_hf(build_vision_toy_hf("toy-vit"), name="toy-vit")
    with pytest.raises(MiMassiveError, match="registered images"):
        model(torch.arange(model.cfg.n_tokens)[None])
