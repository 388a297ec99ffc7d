"""The residual fast path (core/fastpath.py): plain ``transformers`` numbers, the right route, the model left intact.

References are independent: a second Hugging Face model built from the same seed (``build_toy_hf`` +
the same planting), run with SDPA attention and ``output_hidden_states=True``, one sequence at a
time (no padding); the last block output is read by a forward hook on that model's last decoder layer
(its ``hidden_states[-1]`` is after the final norm).
"""

from __future__ import annotations

import pytest
import torch

import mi_massive as mm
from mi_massive.core.engine import run_capture
from mi_massive.core.fastpath import ROUTE_ENV, pick_route, plain_hf, run_residual
from mi_massive.core.loading import build_toy_hf, load_toy, plant_massive_activation, toy_tokenizer
from mi_massive.core.names import act_name, resid_names
from mi_massive.errors import MiMassiveError

KINDS = ("toy-llama", "toy-gpt2")
PLANT = [(1, 5, 3000.0)]
TEXTS = ["The cat sat on the mat today.", "Hi there", "A b c d e"]


def _reference_hf(kind: str):
    hf = build_toy_hf(kind, seed=0)
    for layer, dim, value in PLANT:
        plant_massive_activation(hf, layer, dim, value)
    hf.set_attn_implementation("sdpa")
    return hf


@torch.no_grad()
def _plain_hidden(hf, ids: torch.Tensor) -> list[torch.Tensor]:
    """[embeddings, block 0 out, ..., block L-1 out] of one unpadded sequence, plain transformers."""
    layers = hf.base_model.layers if hasattr(hf.base_model, "layers") else hf.base_model.h
    last = {}
    handle = layers[-1].register_forward_hook(lambda m, a, out: last.__setitem__("h", out[0] if isinstance(out, tuple) else out))
    try:
        hidden = hf.base_model(ids, output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    return [*hidden[: len(layers)], last["h"]]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def planted():
    return {kind: load_toy(kind, seed=0, plant=PLANT) for kind in KINDS}


def _batch(model):
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    _, ids, mask = next(corpus.batches(len(TEXTS)))
    assert not mask.all()  # right-padded: the test covers padding
    return corpus, ids, mask


@pytest.mark.parametrize("kind", KINDS)
def test_fast_route_equals_plain_transformers_at_real_positions(planted, kind):
    model = planted[kind]
    ref = _reference_hf(kind)
    _, ids, mask = _batch(model)
    names = resid_names(model.cfg.n_layers)
    assert pick_route(model, names) == "hf"
    _, fast = run_capture(model, ids, names, mask=mask, route="auto")
    _, bridge = run_capture(model, ids, names, mask=mask, route="bridge")
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        plain = _plain_hidden(ref, ids[row: row + 1, :n])
        for name, want in zip(names, plain):
            got = fast[name][row, :n]
            assert _rel(got, want[0]) <= 1e-6, (name, row)  # the same computation (SDPA, same order)
            assert _rel(bridge[name][row, :n], want[0]) <= 1e-4, (name, row)  # eager vs SDPA rounding
    # the planted entry, exactly where it was put
    assert round(float(fast[act_name("resid_post", 1)][0, 0, 5])) == 3000


def test_gpt2_embeddings_include_position_embeddings(planted):
    model = planted["toy-gpt2"]
    ids = torch.tensor([[0, 5, 6, 7]])
    emb = run_residual(model, ids, ["blocks.0.hook_resid_pre"])["blocks.0.hook_resid_pre"]
    with plain_hf(model) as hf:
        want = hf.transformer.wte.weight[ids[0]] + hf.transformer.wpe.weight[:4]
    assert torch.allclose(emb[0], want, atol=1e-6)


def test_resid_pre_of_block_l_is_block_l_minus_1_output(planted):
    model = planted["toy-llama"]
    ids = torch.tensor([[0, 5, 6, 7]])
    acts = run_residual(model, ids, ["blocks.2.hook_resid_pre", "blocks.1.hook_resid_post"])
    assert torch.equal(acts["blocks.2.hook_resid_pre"], acts["blocks.1.hook_resid_post"])
    _, bridge = run_capture(model, ids, ["blocks.2.hook_resid_pre"], route="bridge")
    assert _rel(acts["blocks.2.hook_resid_pre"], bridge["blocks.2.hook_resid_pre"]) <= 1e-5


def test_route_choice(planted, monkeypatch):
    model = planted["toy-llama"]
    resid = ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_post"]
    assert pick_route(model, resid) == "hf"
    assert pick_route(model, resid, route="bridge") == "bridge"
    assert pick_route(model, resid + [act_name("z", 0)]) == "bridge"
    assert pick_route(model, resid, need_logits=True) == "bridge"
    assert pick_route(model, resid, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: x)]) == "bridge"
    with pytest.raises(MiMassiveError, match="route 'hf' cannot serve"):
        pick_route(model, [act_name("pattern", 0)], route="hf")
    with pytest.raises(MiMassiveError, match="unknown route"):
        pick_route(model, resid, route="fast")
    monkeypatch.setenv(ROUTE_ENV, "bridge")
    assert pick_route(model, resid) == "bridge"
    result = mm.scan(model, mm.text_corpus(model, TEXTS, prepend_bos=True), progress=False)
    assert result.provenance["options"]["route"] == "bridge"


def test_scan_records_route_and_finds_the_same_entries(planted, monkeypatch):
    model = planted["toy-llama"]
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    fast = mm.scan(model, corpus, progress=False)
    monkeypatch.setenv(ROUTE_ENV, "bridge")
    slow = mm.scan(model, corpus, progress=False)
    assert fast.provenance["options"]["route"] == "hf" and slow.provenance["options"]["route"] == "bridge"
    assert [(e.layer, e.sequence, e.position, e.dim) for e in fast.massive] == \
           [(e.layer, e.sequence, e.position, e.dim) for e in slow.massive] == [(l, s, 0, 5) for l in (1, 2)
                                                                                 for s in range(3)]
    for a, b in zip(fast.layers, slow.layers):
        assert a.top_values == pytest.approx(b.top_values, rel=1e-5)
        assert a.median == pytest.approx(b.median, rel=1e-4)


def test_hooks_on_the_bridge_force_the_bridge_route():
    model = load_toy("toy-llama", seed=0)
    ids = torch.tensor([[0, 5, 6, 7]])
    name = "blocks.1.hook_resid_post"
    _, clean = run_capture(model, ids, [name], route="auto")
    model.add_hook(name, lambda x, hook: x + 1.0)  # a user's permanent edit of the residual stream
    try:
        assert pick_route(model, [name]) == "bridge"
        _, edited = run_capture(model, ids, [name], route="auto")
    finally:
        model.reset_hooks()
    assert torch.allclose(edited[name], clean[name] + 1.0, atol=1e-5)
    handle = model.blocks[0].register_forward_pre_hook(lambda m, a: None)  # e.g. record_block_calls
    try:
        assert pick_route(model, [name]) == "bridge"
    finally:
        handle.remove()
    assert pick_route(model, [name]) == "hf"


def test_model_restored_and_stops_early(planted):
    model = planted["toy-llama"]
    ids = torch.tensor([[0, 5, 6, 7]])
    before = {n: id(m) for n, m in model.named_modules()}
    logits_before = model(ids)
    with pytest.raises(RuntimeError, match="boom"):
        with plain_hf(model) as hf:
            assert hf.config._attn_implementation == "sdpa"
            assert type(hf.model.layers[0].self_attn).__name__ == "LlamaAttention"
            raise RuntimeError("boom")
    assert {n: id(m) for n, m in model.named_modules()} == before
    assert model.original_model.config._attn_implementation == "eager"
    calls = []
    handle = model.blocks[2].original_component.register_forward_hook(lambda *a: calls.append(1))
    try:
        run_residual(model, ids, ["blocks.0.hook_resid_post"])  # block 2 never runs
        assert calls == []
        run_residual(model, ids, ["blocks.2.hook_resid_post"])
        assert calls == [1]
    finally:
        handle.remove()
    assert {n: id(m) for n, m in model.named_modules()} == before
    assert torch.equal(model(ids), logits_before)


@pytest.mark.parametrize("kind", KINDS)
def test_kv_bias_variant_keeps_its_attention(kind):
    from mi_massive.core.variants import VariantSpec, apply_variant, bridge_variant

    hf = apply_variant(build_toy_hf(kind, seed=0), VariantSpec.parse("kv_bias"), seed=1)
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.endswith(("k_bias", "v_bias")):
                p.mul_(50.0)  # far from rounding
    model = bridge_variant(hf, toy_tokenizer(), name="kv_bias")
    ids = torch.tensor([[0, 84, 104, 101, 32, 99, 97, 116], [0, 65, 32, 100, 111, 103, 32, 114]])
    names = resid_names(model.cfg.n_layers)
    with plain_hf(model) as inner:
        assert inner.config._attn_implementation == "kv_bias"  # custom attention kept, not SDPA
    _, fast = run_capture(model, ids, names, route="auto")
    _, bridge = run_capture(model, ids, names, route="bridge")
    plain = _plain_hidden(hf, ids)  # the patched HF model itself (its own kv_bias attention)
    for name, want in zip(names, plain):
        assert _rel(fast[name], want) <= 1e-6, name
        assert _rel(bridge[name], want) <= 1e-5, name


@pytest.mark.slow
def test_smollm2_fast_route_equals_plain_transformers(smollm2):
    from transformers import AutoModelForCausalLM

    folder = mm.model_info(smollm2).extra["converted_copy"]
    ref = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa", dtype=torch.float32).eval()
    corpus = mm.builtin_corpus(smollm2, n_samples=2, seq_len=64, seed=0)
    ids = torch.tensor(corpus.sequences)
    names = resid_names(smollm2.cfg.n_layers)
    _, fast = run_capture(smollm2, ids, names, route="auto")
    _, bridge = run_capture(smollm2, ids, names, route="bridge")
    plain = _plain_hidden(ref, ids)
    worst_bridge = 0.0
    for name, want in zip(names, plain):
        assert _rel(fast[name], want) <= 1e-6, name
        worst_bridge = max(worst_bridge, _rel(bridge[name], want))
    assert worst_bridge <= 1e-4  # SDPA vs eager: measured 3e-6 (docs/fastpath.md)


@pytest.mark.gpu
def test_fast_route_on_cuda_equals_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    ids = torch.tensor([[0, 5, 6, 7, 8, 9]])
    names = resid_names(3)
    _, cpu = run_capture(load_toy("toy-llama", seed=0, plant=PLANT), ids, names, route="auto")
    gpu_model = load_toy("toy-llama", seed=0, plant=PLANT, device="cuda")
    assert pick_route(gpu_model, names) == "hf"
    _, gpu = run_capture(gpu_model, ids, names, route="auto")
    for name in names:
        assert gpu[name].device.type == "cuda"
        assert _rel(gpu[name].cpu(), cpu[name]) <= 1e-4, name


@pytest.mark.parametrize("n", [5, 32_768, 32_769, 147_456])
def test_exact_median_equals_numpy(n):
    import numpy as np

    from mi_massive.analyses.scan.median import exact_median

    gen = torch.Generator().manual_seed(n)
    for x in (torch.randn(n, generator=gen).abs() ** 3,                     # skewed, like |h|
              torch.randint(0, 40, (n,), generator=gen).float(),             # heavy ties
              torch.cat([torch.zeros(n // 2), torch.full((n - n // 2,), 7.0)])):  # two values, middle between
        assert exact_median(x) == float(np.median(x.numpy()))
