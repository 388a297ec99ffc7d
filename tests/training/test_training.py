"""Save/load round trips, the training loop (loss goes down, deterministic, resumable), TVR in training,
hooks/scan/ablation on every variant, and the two CLI commands (tiny models, a few steps)."""

from __future__ import annotations

import contextlib
import copy
import json

import pytest
import torch

from mi_massive.core.loading import ToyConfig, build_toy_hf, load_model, model_info, toy_tokenizer
from mi_massive.training import TokenStream, TrainConfig, TVRCallback, evaluate, train
from mi_massive.core.variants import TVRConfig, VariantSpec, apply_variant, bridge_variant, save_variant

TINY = ToyConfig(n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, d_mlp=64, n_ctx=64)
IDS = torch.tensor([[0, 84, 104, 101, 32, 99, 97, 116, 32, 115, 97, 116, 46]])


@contextlib.contextmanager
def one_thread():
    """Tiny models train ~50x faster on 1 thread than on 2 on a shared CPU; restore afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def stream(tok):
    from mi_massive.core.corpus import builtin_text

    text = builtin_text()[:60000]
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
    return TokenStream(ids[:50000], 0, {"kind": "builtin"}), TokenStream(ids[50000:], 0, {"kind": "builtin"})


@pytest.mark.parametrize("kind", ["toy-gpt2", "toy-llama"])
def test_save_load_round_trip_is_bit_identical(tmp_path, tok, kind):
    spec = VariantSpec.parse("tvr+kv_bias+dyt+register")
    hf = apply_variant(build_toy_hf(kind, seed=3, config=TINY), spec, seed=3)
    save_variant(hf, tmp_path, spec=spec, tokenizer=tok, base=kind, extra={"note": "test"})
    meta = json.loads((tmp_path / "mi_massive_variant.json").read_text())
    assert meta["variant"]["name"] == "tvr+kv_bias+dyt+register" and meta["structure"]["kv_bias"]
    bridge = load_model(tmp_path)  # dispatches to load_variant
    info = model_info(bridge)
    assert info.source == "variant" and info.fingerprint.startswith("sha256:")
    from mi_massive.core.variants.io import load_variant_hf

    hf2 = load_variant_hf(tmp_path)[0]
    sd1, sd2 = hf.state_dict(), hf2.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    with torch.no_grad():
        ref = hf(IDS).logits
        assert torch.equal(hf2(IDS).logits, ref)
        assert (bridge(IDS) - ref).abs().max().item() < 1e-5
    # refuses a bridged model and a spec that does not match the structure
    from mi_massive.errors import MiMassiveError

    with pytest.raises(MiMassiveError):
        save_variant(bridge, tmp_path / "x", spec=spec, tokenizer=tok)
    with pytest.raises(MiMassiveError):
        save_variant(hf2, tmp_path / "y", spec=VariantSpec.parse("dyt"), tokenizer=tok)


def test_training_reduces_loss_deterministically_and_resumes(tmp_path, stream):
    train_s, eval_s = stream
    windows = eval_s.windows(4, 32)
    cfg = TrainConfig(steps=12, batch_size=4, seq_len=32, lr=3e-3, min_lr=3e-4, warmup=2, seed=5, checkpoint_every=6)

    def run():
        hf = apply_variant(build_toy_hf("toy-llama", seed=5, config=TINY), VariantSpec.parse("kv_bias"), seed=5)
        before = evaluate(hf, windows)
        with one_thread():
            log = train(hf, train_s, cfg, eval_windows=windows, progress=False)
        return hf, log, before

    hf_a, log_a, before = run()
    assert log_a.evals[-1]["loss"] < before - 0.05  # a few steps reduce the held-out loss
    assert log_a.losses[-1] < log_a.losses[0]
    hf_b, log_b, _ = run()
    assert log_a.losses == log_b.losses  # seeded: identical runs
    assert all(torch.equal(p, q) for p, q in zip(hf_a.parameters(), hf_b.parameters()))
    # resume: a run interrupted after its step-6 checkpoint finishes identically to the uninterrupted one
    hf_e = apply_variant(build_toy_hf("toy-llama", seed=5, config=TINY), VariantSpec.parse("kv_bias"), seed=5)
    half = tmp_path / "half"

    class Stop(Exception):
        pass

    class StopAt6:
        def on_step_end(self, step, model, log):
            if step + 1 == 7:
                raise Stop

    with one_thread(), pytest.raises(Stop):
        train(hf_e, train_s, cfg, checkpoint_dir=half, callbacks=[StopAt6()], progress=False)
    hf_f = apply_variant(build_toy_hf("toy-llama", seed=5, config=TINY), VariantSpec.parse("kv_bias"), seed=5)
    with one_thread():
        log_f = train(hf_f, train_s, cfg, checkpoint_dir=half, progress=False)
    assert log_f.resumed_from == 6
    assert log_f.losses == log_a.losses
    assert all(torch.equal(p, q) for p, q in zip(hf_a.parameters(), hf_f.parameters()))


def test_trainable_new_only_touches_new_parameters(stream):
    train_s, _ = stream
    base = build_toy_hf("toy-gpt2", seed=1, config=TINY)
    hf = apply_variant(copy.deepcopy(base), VariantSpec.parse("kv_bias"), seed=1)
    with one_thread():
        log = train(hf, train_s, TrainConfig(steps=3, batch_size=2, seq_len=16, warmup=1, trainable="new"),
                    progress=False)
    assert log.n_trainable == 2 * TINY.n_layers * TINY.n_heads * (TINY.d_model // TINY.n_heads)
    old = dict(base.named_parameters())
    for name, p in hf.named_parameters():
        if name.endswith(("k_bias", "v_bias")):
            continue
        assert torch.equal(p, old[name]), name


def test_tvr_callback_runs_every_interval(stream):
    train_s, _ = stream
    hf = build_toy_hf("toy-gpt2", seed=2, config=TINY)
    cfg = TVRConfig(target_std=0.01, interval=2)
    with one_thread():
        log = train(hf, train_s, TrainConfig(steps=5, batch_size=2, seq_len=16, warmup=1, lr=1e-2),
                    callbacks=[TVRCallback(cfg)], progress=False)
    assert [e["step"] for e in log.tvr_events] == [2, 4]
    assert log.tvr_events[0]["rescaled"] > 0


@pytest.mark.parametrize("name", ["kv_bias", "dyt", "register", "tvr+kv_bias", "tvr+dyt"])
def test_hooks_scan_and_ablation_work_on_every_variant(tok, name):
    from mi_massive.core.corpus import text_corpus
    from mi_massive.analyses.scan.run import scan
    from mi_massive.analyses.variants.run import attention_mass
    from mi_massive.core.engine import run_capture

    spec = VariantSpec.parse(name)
    hf = apply_variant(build_toy_hf("toy-llama", seed=0, config=TINY), spec, seed=0)
    bridge = bridge_variant(hf, tok, name=name)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(IDS)
    fired = {k.split(".", 2)[-1] for k in cache if k.startswith("blocks.1.")}
    for hook in ("hook_resid_pre", "hook_resid_post", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z",
                 "attn.hook_pattern", "attn.hook_attn_scores", "hook_attn_out", "mlp.hook_pre", "hook_mlp_out",
                 "ln1.hook_normalized", "ln2.hook_normalized"):
        assert hook in fired, hook
    result = scan(bridge, text_corpus(bridge, "The cat sat on the mat.", prepend_bos=True), progress=False)
    assert len(result.layers) == TINY.n_layers + 1
    zero = lambda z, hook: torch.zeros_like(z)
    logits, acts = run_capture(bridge, IDS, ["blocks.1.hook_attn_out"], fwd_hooks=[("blocks.1.attn.hook_z", zero)],
                               need_logits=True)
    assert acts["blocks.1.hook_attn_out"].abs().max().item() == 0.0  # Llama has no b_O
    with torch.no_grad():
        assert (logits - bridge(IDS)).abs().max().item() > 0
    mass = attention_mass(bridge, IDS)
    assert len(mass["first_token"]) == TINY.n_layers
    assert bool(mass["bias_slot"]) == spec.kv_bias


def test_cli_train_and_compare(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    text = tmp_path / "corpus.txt"
    from mi_massive.core.corpus import builtin_text

    text.write_text(builtin_text()[:40000], encoding="utf-8")
    common = ["--base", "toy-llama", "--data", str(text), "--steps", "3", "--batch-size", "2", "--seq-len", "16",
              "--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--n-kv-heads", "1", "--n-eval", "2"]
    runner = CliRunner()
    res = runner.invoke(app, ["train-variant", "--variant", "tvr+kv_bias", *common, "--tvr-interval", "2",
                              "-o", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    assert "eval loss" in res.output
    assert model_info(load_model(tmp_path / "v")).extra["variant"]["name"] == "tvr+kv_bias"
    res = runner.invoke(app, ["compare-variants", "--variants", "baseline,kv_bias,register", *common,
                              "--scan-windows", "2", "-o", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["name"] for r in record["reports"]] == ["baseline", "kv_bias", "register"]
    assert (tmp_path / "cmp" / "compare.html").is_file()
    assert record["reports"][1]["attn_bias_slot"] and not record["reports"][0]["attn_bias_slot"]
    res = runner.invoke(app, ["compare-variants", "--variants", "kv_bais", *common, "-o", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "unknown variant" in res.output
