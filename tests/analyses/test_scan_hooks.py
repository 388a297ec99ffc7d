"""``scan --hooks``: any hook point, checked against forward hooks on the plain ``transformers`` modules.

The reference is an independent copy of the toy (``build_toy_hf`` + the same planting), with its norm
weights and biases moved away from 1 / 0 so that a norm output read before its weight would differ; the
bridge gets the same weights. Each sequence runs alone through the reference (no padding), the scan runs
the corpus in one right-padded batch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mi_massive as mm
from hf_reference import hooked_forward
from mi_massive.analyses.scan.run import scan
from mi_massive.core.loading.toy import build_toy_hf, plant_massive_activation
from mi_massive.core.names import SCAN_KINDS, expand_hooks
from mi_massive.errors import MiMassiveError

PLANT = [(1, 5, 3000.0)]
TEXTS = ["The cat sat on the mat.", "Dogs bark at night!"]
ALL_KINDS = ["resid_post", "resid_pre", "resid_mid", "attn_out", "mlp_out", "ln1", "ln2", "ln_final",
             "attn.hook_q", "attn.hook_k", "attn.hook_v", "mlp.hook_post"]


def _models(kind: str):
    """(bridge, independent plain HF model) with identical weights, norm weights (and biases) randomised."""
    ref = build_toy_hf(kind, seed=0)
    for layer, dim, value in PLANT:
        plant_massive_activation(ref, layer, dim, value)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name or "ln_" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    bridge = mm.load_toy(kind, plant=PLANT)
    params = {n.replace("_original_component.", ""): p for n, p in bridge.original_model.named_parameters()}
    norms = [(name, p) for name, p in ref.named_parameters() if "norm" in name or "ln_" in name]
    with torch.no_grad():  # the rest is equal already: same seed, same planting
        for name, p in norms:
            params[name].copy_(p)
    assert len(norms) >= 2 * bridge.cfg.n_layers + 1
    return bridge, ref


def _hf_hooks(kind: str, ids: torch.Tensor, ref) -> dict[str, torch.Tensor]:
    """Every scan kind as [1, pos, features] from forward hooks on the HF modules (plain transformers)."""
    got: dict[str, torch.Tensor] = {}
    handles = []

    def out_hook(key, pick=lambda o: o[0] if isinstance(o, tuple) else o):
        return lambda _m, _i, o: got.__setitem__(key, pick(o).detach().clone())

    def in_hook(key):
        return lambda _m, args, kwargs: got.__setitem__(key, (args[0] if args else kwargs["hidden_states"]).detach().clone())

    gpt2 = kind == "toy-gpt2"
    layers = ref.transformer.h if gpt2 else ref.model.layers
    d = ref.config.hidden_size
    for L, block in enumerate(layers):
        reg = lambda mod, key, pick=None: handles.append(mod.register_forward_hook(out_hook(key) if pick is None else out_hook(key, pick)))
        pre = lambda mod, key: handles.append(mod.register_forward_pre_hook(in_hook(key), with_kwargs=True))
        pre(block, f"resid_pre.{L}")
        reg(block, f"resid_post.{L}")
        if gpt2:
            pre(block.ln_2, f"resid_mid.{L}")
            reg(block.attn, f"attn_out.{L}")
            reg(block.ln_1, f"ln1.{L}")
            reg(block.ln_2, f"ln2.{L}")
            for i, name in enumerate(("attn.hook_q", "attn.hook_k", "attn.hook_v")):
                reg(block.attn.c_attn, f"{name}.{L}", pick=lambda o, i=i: o[..., i * d:(i + 1) * d])
            pre(block.mlp.c_proj, f"mlp.hook_post.{L}")
        else:
            pre(block.post_attention_layernorm, f"resid_mid.{L}")
            reg(block.self_attn, f"attn_out.{L}")
            reg(block.input_layernorm, f"ln1.{L}")
            reg(block.post_attention_layernorm, f"ln2.{L}")
            reg(block.self_attn.q_proj, f"attn.hook_q.{L}")
            reg(block.self_attn.k_proj, f"attn.hook_k.{L}")
            reg(block.self_attn.v_proj, f"attn.hook_v.{L}")
            pre(block.mlp.down_proj, f"mlp.hook_post.{L}")
        reg(block.mlp, f"mlp_out.{L}")
    handles.append((ref.transformer.ln_f if gpt2 else ref.model.norm).register_forward_hook(out_hook("ln_final")))
    hooked_forward(ref, ids, handles)
    return got


def _key(hook: str) -> str:
    """The reference key of a bridge hook name (``blocks.2.attn.hook_q`` -> ``attn.hook_q.2``)."""
    if hook.startswith("ln_final"):
        return "ln_final"
    layer, rest = hook.split(".", 2)[1:]
    kind = next(k for k, v in SCAN_KINDS.items() if v == rest)
    return f"{kind}.{layer}"


@pytest.mark.parametrize("kind", ["toy-llama", "toy-gpt2"])
def test_every_hook_kind_equals_the_hf_modules(kind):
    bridge, ref = _models(kind)
    corpus = mm.text_corpus(bridge, TEXTS, prepend_bos=True)
    result = scan(bridge, corpus, hooks=",".join(ALL_KINDS), top_k=3, progress=False)
    per_seq = [_hf_hooks(kind, torch.tensor([seq]), ref) for seq in corpus.sequences]
    n_layers = bridge.cfg.n_layers
    assert len(result.layers) == 11 * n_layers + 1  # 11 block kinds (the embeddings = resid_pre 0) + ln_final
    assert result.provenance["options"]["route"] == "bridge"
    for rec in result.layers:
        key = "resid_pre.0" if rec.hook == "blocks.0.hook_resid_pre" else _key(rec.hook)
        hs = [ref_acts[key][0].float() for ref_acts in per_seq]  # [pos, features]; q/k/v head-major
        a = torch.cat([h.abs() for h in hs])
        assert len(rec.dim_max) == hs[0].shape[-1], rec.hook
        np.testing.assert_allclose(rec.dim_max, a.amax(0).numpy(), rtol=1e-4, atol=1e-5, err_msg=rec.hook)
        np.testing.assert_allclose(rec.per_sequence.median, [float(np.median(h.abs().numpy())) for h in hs],
                                   rtol=1e-4, atol=1e-6, err_msg=rec.hook)
        tops = [h.abs().flatten().topk(3).values.tolist() for h in hs]
        np.testing.assert_allclose(rec.per_sequence.top_values, tops, rtol=1e-4, atol=1e-5, err_msg=rec.hook)


def test_planted_entry_is_found_where_it_is_written():
    # the planted MLP of block 1 writes exactly 3000 into dim 5 at position 0: mlp_out of block 1 holds it,
    # attn_out and q never do; resid_mid of block 2 carries it on (block 1's output), resid_mid of block 1 not
    model = mm.load_toy("toy-llama", plant=PLANT)
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    result = scan(model, corpus, hooks="mlp_out,attn_out,resid_mid,attn.hook_q", progress=False)
    by_hook = {}
    for e in result.massive:
        by_hook.setdefault(e.hook, set()).add((e.sequence, e.position, e.dim, round(e.value, 2)))
    assert by_hook == {"blocks.1.hook_mlp_out": {(0, 0, 5, 3000.0), (1, 0, 5, 3000.0)},
                       "blocks.2.hook_resid_mid": {(0, 0, 5, 3000.0), (1, 0, 5, 3000.0)}}
    assert [r.label for r in result.layers[:2]] == ["block 0 mlp_out", "block 1 mlp_out"]
    assert result.layer(1, "blocks.1.hook_mlp_out").massive_dims == [5]
    assert result.summary.first_layer == 1 and result.block_layers == []
    assert list(mm.analysis("scan").figures(result)) == ["layerwise_mlp_out", "layerwise_attn_out",
                                                         "layerwise_resid_mid", "layerwise_attn_hook_q"]


def test_default_is_unchanged_and_resid_post_is_the_default(toy_llama):
    corpus = mm.text_corpus(toy_llama, "The cat sat.", prepend_bos=True)
    default = scan(toy_llama, corpus, progress=False).to_dict()
    explicit = scan(toy_llama, corpus, hooks="resid_post", progress=False).to_dict()
    for d in (default, explicit):
        d["provenance"].pop("created", None)
        d["provenance"].pop("timestamp", None)
    assert json.dumps(default, sort_keys=True, default=str) == json.dumps(explicit, sort_keys=True, default=str)
    opts = default["provenance"]["options"]
    assert opts["hooks"] == "blocks.L.hook_resid_post (+ blocks.0.hook_resid_pre)" and opts["route"] == "hf"
    assert [r["hook"] for r in default["layers"]] == ["blocks.0.hook_resid_pre"] + [
        f"blocks.{L}.hook_resid_post" for L in range(3)]


def test_unknown_hook_is_a_one_line_error_listing_the_kinds(toy_llama):
    corpus = mm.text_corpus(toy_llama, "The cat sat.", prepend_bos=True)
    for bad in ("mlp_outt", "blocks.9.hook_mlp_out", "blocks.*.hook_nothing"):
        with pytest.raises(MiMassiveError) as err:
            scan(toy_llama, corpus, hooks=bad, progress=False)
        assert "\n" not in str(err.value)
    with pytest.raises(MiMassiveError, match="resid_post, resid_pre, resid_mid, attn_out, mlp_out, ln1, ln2"):
        scan(toy_llama, corpus, hooks="mlp_outt", progress=False)
    with pytest.raises(MiMassiveError, match="not per-token"):
        scan(toy_llama, corpus, hooks="blocks.0.attn.hook_pattern", progress=False)


def test_patterns_and_forms_expand_to_the_right_names(toy_llama):
    names, n = list(toy_llama.hook_dict), toy_llama.cfg.n_layers
    mlp_out = [f"blocks.{L}.hook_mlp_out" for L in range(n)]
    assert expand_hooks("blocks.*.hook_mlp_out", names, n) == mlp_out
    assert expand_hooks("hook_mlp_out", names, n) == mlp_out == expand_hooks("mlp_out", names, n)
    assert expand_hooks("blocks.1.attn.hook_[qk]", names, n) == ["blocks.1.attn.hook_q", "blocks.1.attn.hook_k"]
    assert expand_hooks("ln1", names, n) == [f"blocks.{L}.ln1.hook_out" for L in range(n)]
    assert expand_hooks(" ln_final , blocks.2.hook_mlp_out,mlp_out", names, n) == (
        ["ln_final.hook_out", "blocks.2.hook_mlp_out"] + mlp_out[:2])  # no repeats
    assert expand_hooks("resid_post", names, n, include_embed=False) == [f"blocks.{L}.hook_resid_post"
                                                                        for L in range(n)]
    attn = expand_hooks("blocks.*.attn.hook_*", names, n)
    assert "blocks.0.attn.hook_q" in attn and not [a for a in attn if "pattern" in a or "scores" in a]
    assert [int(a.split(".")[1]) for a in attn] == sorted(int(a.split(".")[1]) for a in attn)


def test_cli_hooks_option(tmp_path):
    from mi_massive.cli import app

    r = CliRunner().invoke(app, ["scan", "-m", "toy-llama", "--text", "The cat sat on the mat.", "--prepend-bos",
                                 "--hooks", "mlp_out,blocks.*.attn.hook_q", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "scan.json").read_text())
    assert [x["hook"] for x in data["layers"]] == [f"blocks.{L}.hook_mlp_out" for L in range(3)] + [
        f"blocks.{L}.attn.hook_q" for L in range(3)]
    assert "block 1 mlp_out" in r.output
    assert data["provenance"]["options"]["hooks"] == [x["hook"] for x in data["layers"]]
    assert list(tmp_path.glob("layerwise_mlp_out.*")) and list(tmp_path.glob("layerwise_attn_hook_q.*"))
    assert not list(tmp_path.glob("feature_3d.*"))  # the 3-D view needs a block output
    r = CliRunner().invoke(app, ["scan", "-m", "toy-llama", "--text", "hi", "--hooks", "nope", "-o", str(tmp_path)])
    assert r.exit_code != 0 and "unknown hook 'nope'" in r.output and "Traceback" not in r.output
