"""``random:`` models: real architectures at real sizes, random weights, generalised planting.

Every number is checked against an independent computation: published parameter counts, a model built
the ordinary way by ``transformers`` (same state dict), plain ``transformers`` hidden states, and the
planted value.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import mi_massive as mm
from mi_massive.core.loading.random import (
    build_random_hf,
    load_random,
    parse_random_spec,
    random_config_fields,
    random_hf_config,
    random_model_rows,
    random_names,
    random_note,
)
from mi_massive.core.loading.toy import plant_family, plant_massive_activation
from mi_massive.errors import MiMassiveError

REQUIRED = {"llama-2-7b", "llama-3-8b", "mistral-7b", "qwen2.5-7b", "gemma-2-9b", "gpt2", "gpt2-xl", "pythia-1b",
            "llama-1b"}
FAMILY = {"llama-2-7b": "llama", "llama-3-8b": "llama", "llama-1b": "llama", "mistral-7b": "llama",
          "qwen2.5-7b": "llama", "gemma-2-9b": "gemma2", "gpt2": "gpt2", "gpt2-xl": "gpt2", "pythia-1b": "gpt_neox"}
# published totals (model cards / papers), independent of the JSON files' own _meta
PUBLISHED = {"llama-2-7b": 6.74e9, "llama-3-8b": 8.03e9, "mistral-7b": 7.24e9, "qwen2.5-7b": 7.61e9,
             "gemma-2-9b": 9.24e9, "gpt2": 124.4e6, "gpt2-xl": 1.558e9, "pythia-1b": 1.012e9, "llama-1b": 1.236e9}


def test_every_required_config_ships():
    assert REQUIRED <= set(random_names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_meta_build_has_the_published_parameter_count_without_allocating(name):
    model = build_random_hf(name, device="meta", dtype="bfloat16")
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params) and all(b.device.type == "meta" for b in model.buffers())
    n = sum(p.numel() for p in params)
    assert n == pytest.approx(PUBLISHED[name], rel=0.01)
    assert n == random_config_fields(name)[1]["published_params"]  # exact count stored with the config
    assert plant_family(model) == FAMILY[name]


def test_gpt2_small_materialises_on_cpu_deterministically():
    a = build_random_hf("gpt2", seed=3)
    b = build_random_hf("gpt2", seed=3)
    c = build_random_hf("gpt2", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["transformer.h.0.mlp.c_fc.weight"], sc["transformer.h.0.mlp.c_fc.weight"])
    assert sum(p.numel() for p in a.parameters()) == 124439808
    assert a.lm_head.weight is a.transformer.wte.weight  # tied, as in GPT-2
    w = a.transformer.h[0].mlp.c_fc.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.02) and abs(w.mean().item()) < 1e-3
    assert torch.equal(a.transformer.h[5].ln_1.weight, torch.ones(768))
    assert torch.equal(a.transformer.h[5].attn.c_attn.bias, torch.zeros(3 * 768))
    assert all(torch.isfinite(p).all() for p in a.parameters())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_tiny_meta_build_equals_an_ordinary_transformers_build(name):
    """Materialising from meta gives the same computation as a model built normally with the same weights
    (so no buffer -- rotary tables, embedding scales -- is left uninitialised)."""
    from transformers import AutoModelForCausalLM

    ours = build_random_hf(name, tiny=True, seed=0)
    reference = AutoModelForCausalLM.from_config(random_hf_config(name, tiny=True),
                                                 attn_implementation="eager").eval()
    reference.load_state_dict(ours.state_dict())
    ids = torch.tensor([[0, 72, 105, 33, 200, 7]])
    with torch.no_grad():
        a = ours(ids, output_hidden_states=True).hidden_states
        b = reference(ids, output_hidden_states=True).hidden_states
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_tiny_scan_values_equal_plain_transformers_hidden_states(name):
    from transformers import AutoModelForCausalLM

    model = load_random(f"random:{name}?tiny=1", device="cpu", seed=1)
    reference = AutoModelForCausalLM.from_config(random_hf_config(name, tiny=True),
                                                 attn_implementation="eager").eval()
    reference.load_state_dict(build_random_hf(name, tiny=True, seed=1).state_dict())
    corpus = mm.text_corpus(model, ["Summer is warm. Winter is cold."], prepend_bos=True)
    result = mm.scan(model, corpus, top_k=3, progress=False)
    with torch.no_grad():
        hidden = reference(torch.tensor(corpus.sequences), output_hidden_states=True).hidden_states
    n_layers = model.cfg.n_layers
    # hidden_states[l + 1] is block l's output, except the last, which transformers returns after the final norm
    outs = [hidden[l + 1] for l in range(n_layers - 1)]
    blocks = (reference.transformer.h if hasattr(reference, "transformer") else
              reference.gpt_neox.layers if hasattr(reference, "gpt_neox") else reference.model.layers)
    last = []
    handle = blocks[-1].register_forward_hook(lambda _m, _i, o: last.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        reference(torch.tensor(corpus.sequences))
    handle.remove()
    outs.append(last[0])
    for layer, h in enumerate(outs):
        a = h[0].abs().numpy()
        rec = result.layer(layer)
        assert rec.median == pytest.approx(float(np.median(a)), rel=1e-4)
        assert rec.top_values == pytest.approx(sorted(a.ravel())[::-1][:3], rel=1e-4)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_planting_works_on_every_architecture(name):
    """Hand-checkable: block 1 writes the value into dim 5 at position 0 only; before block 1 dim 5 is 0."""
    hf = build_random_hf(name, tiny=True, seed=2)
    p = plant_massive_activation(hf, 1, 5, 700.0)
    blocks = (hf.transformer.h if hasattr(hf, "transformer") else
              hf.gpt_neox.layers if hasattr(hf, "gpt_neox") else hf.model.layers)
    outs = []
    handles = [b.register_forward_hook(lambda _m, _i, o: outs.append(o[0] if isinstance(o, tuple) else o))
               for b in blocks]
    with torch.no_grad():
        hf(torch.tensor([[0, 84, 104, 101, 32, 99, 97, 116]]))
    for h in handles:
        h.remove()
    assert outs[0][0, :, 5].abs().max().item() == 0.0
    assert outs[1][0, 0, 5].item() == pytest.approx(700.0, rel=1e-5)
    assert outs[1][0, 1:, 5].abs().max().item() == 0.0
    assert outs[1][0, :, p.indicator_dim].abs().max().item() < 100  # the marker is not massive itself


def test_bf16_llama_1b_planted_entry_is_detected_exactly():
    """A 1.24e9-parameter Llama-3.2-1B-shaped model in bf16 with one planted entry: the scan finds exactly
    that entry (layer, position 0, dim) at the planted value within bf16 rounding, and nothing else."""
    start = time.perf_counter()
    layer, dim, value = 3, 1234, 3000.0
    model = mm.load_model(f"random:llama-1b?plant={layer}:{dim}:{value:g}", device="cpu", dtype="bf16", seed=0)
    info = mm.model_info(model)
    assert info.source == "random" and info.dtype == "bfloat16"
    assert info.fingerprint == f"random:llama-1b:seed=0:plant({layer},{dim},3000)"
    assert info.extra["n_params"] == 1235814400 and (info.n_layers, info.d_model) == (16, 2048)
    corpus = mm.text_corpus(model, ["The cat sat on the mat.", "Hello"], prepend_bos=True)
    result = mm.scan(model, corpus, progress=False)
    expected = {(l, s, 0, dim) for l in range(layer, 16) for s in range(2)}
    assert {(e.layer, e.sequence, e.position, e.dim) for e in result.massive} == expected
    assert all(abs(e.value - value) <= value * 2 ** -7 for e in result.massive)  # bf16: 8 significant bits
    assert result.near_massive_total == 0
    assert result.summary["first_layer"] == layer and [d["dim"] for d in result.summary["dims"]] == [dim]
    assert time.perf_counter() - start < 60


def test_load_model_records_random_provenance_and_cli_note():
    model = mm.load_model("random:gpt2?tiny=1&plant=1:3:500", device="cpu", seed=5)
    info = mm.model_info(model)
    assert (info.source, info.spec, info.architecture) == ("random", "random:gpt2?tiny=1&plant=1:3:500",
                                                           "GPT2LMHeadModel")
    assert info.fingerprint == "random:gpt2:seed=5:tiny:plant(1,3,500)"
    assert info.extra["weights"] == "random" and info.extra["planted"][0]["value"] == 500.0
    assert random_note(info) == "weights are RANDOM (random:gpt2?tiny=1&plant=1:3:500, seed 5)"
    assert random_note(mm.model_info(mm.load_toy("toy-gpt2"))) is None


def test_spec_parsing_and_errors():
    assert parse_random_spec("random:gpt2") == ("gpt2", [], False)
    assert parse_random_spec("random:pythia-1b?plant=0:1:2.5") == ("pythia-1b", [(0, 1, 2.5)], False)
    with pytest.raises(MiMassiveError, match="unknown random model 'llama-9000'"):
        parse_random_spec("random:llama-9000")
    with pytest.raises(MiMassiveError, match="LAYER:DIM:VALUE"):
        parse_random_spec("random:gpt2?plant=1:2")
    with pytest.raises(MiMassiveError, match="unknown option 'foo'"):
        parse_random_spec("random:gpt2?foo=1")
    with pytest.raises(MiMassiveError, match="unknown random model"):
        mm.load_model("random:nope", device="cpu")
    with pytest.raises(MiMassiveError, match="layer 9 out of range"):
        load_random("random:gpt2?tiny=1&plant=9:1:100", device="cpu")


def test_models_listing_has_every_random_spec():
    names = {row["name"] for row in random_model_rows()}
    assert {f"random:{n}" for n in REQUIRED} <= names
    assert all("RANDOM" in row["description"] for row in random_model_rows())


def _devices_gpu():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "devices_gpu.py"
    spec = importlib.util.spec_from_file_location("devices_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_says_not_available_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _devices_gpu().gpu_part("cuda") == {"gpu": "not available on this machine"}


@pytest.mark.slow
def test_gpu_benchmark_logic_runs_on_cpu_tiny():
    section = _devices_gpu().gpu_part("cpu", tiny=True, repeats=1)["gpu"]
    rec = section["models"]["random:llama-2-7b?tiny=1&plant=1:10:3000"]
    assert rec["weights"] == "RANDOM" and rec["massive_found"] == 1 and rec["dtype"] == "bfloat16"
    assert rec["max_rel_diff_top1_vs_plain"] < 1e-2  # bf16, SDPA vs eager
    assert rec["ratio_scan_to_plain"] == pytest.approx(rec["scan_median_seconds"] / rec["plain_median_seconds"])
    assert rec["breakdown"]["medians_equal_across_methods"] is True
    fixed = rec["fixed_costs"]
    assert fixed["scan_minus_plain_ms"] == pytest.approx(fixed["scan_median_ms"] - fixed["plain_median_ms"])
    assert set(rec["breakdown"]["reduce_first_batch_median_seconds"]) == {"histogram", "sort"}
    assert "not GPU figures" in section["note"]
