"""The scan: exact detection on planted toys, statistics vs independent computations, SmolLM2 vs transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_reference import block_outputs
from mi_massive.analyses.scan.detect import detect
from mi_massive.analyses.scan.median import exact_median
from mi_massive.analyses.scan.reduce import reduce_batch
from mi_massive.core.corpus import builtin_corpus, text_corpus
from mi_massive.errors import MiMassiveError, NumericalOverflowError
from mi_massive.core.loading import load_toy
from mi_massive.analyses.scan.run import scan
from mi_massive.analyses.scan.record import ScanResult


def hf_block_outputs(hf_model, ids: torch.Tensor) -> list[torch.Tensor]:
    """Block outputs from plain forward hooks on the HF decoder layers (independent of the bridge)."""
    blocks = hf_model.transformer.h if hasattr(hf_model, "transformer") else hf_model.model.layers
    return block_outputs(hf_model, blocks, ids)


def test_exact_median_matches_numpy():
    for n in (1, 2, 7, 10, 1001):
        x = torch.randn(n)
        assert exact_median(x) == pytest.approx(float(np.median(x.numpy())), rel=1e-6)


def test_exact_median_brackets_structured_rows_without_falling_back(monkeypatch):
    """|h| of a [pos, d_model] row where every 72nd dim is large (a stride through it would sample those dims
    only): the random bracketing sample still holds the middle ranks, so no full np.median runs, and the value
    is numpy's exactly."""
    import mi_massive.analyses.scan.median as median

    g = torch.Generator().manual_seed(0)
    rows = []
    for scale in (1.0, 1e-3, 50.0):
        h = torch.randn(256, 576, generator=g).abs() * scale
        h[:, ::72] *= 1000.0
        h[0, 5] = 3e4
        rows += [h, h.bfloat16().float()]  # and with heavy ties
    want = [float(np.median(h.numpy())) for h in rows]
    full, numpy_median = [], np.median
    monkeypatch.setattr(median.np, "median", lambda x, *a, **k: full.append(x.size) or numpy_median(x, *a, **k))
    assert [exact_median(h) for h in rows] == want and full == []


def test_batch_statistics_hand_example():
    h = torch.zeros(1, 3, 4)
    h[0, 0, 2] = -500.0
    h[0, 1, 1] = 7.0
    h[0, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.tensor([[True, True, False]])  # position 2 is padding and must be ignored
    s = reduce_batch({"h": h}, ["h"], mask, lengths=[2], top_k=2)["h"]
    assert s.top_values.tolist() == [[500.0, 7.0]]
    assert s.top_positions.tolist() == [[0, 1]] and s.top_dims.tolist() == [[2, 1]]
    assert s.median.tolist() == [0.0]  # 8 real entries, six zeros
    assert s.dim_max.tolist() == [0.0, 7.0, 500.0, 0.0]
    assert s.massive.values.tolist() == [-500.0]  # median 0: any entry above 100 is massive
    assert detect(h, mask)[0].values.tolist() == [-500.0]  # the median computed by detect itself
    massive, near = detect(h, mask, torch.tensor([0.1]), abs_threshold=100, rel_threshold=1000)
    assert massive.positions.tolist() == [0] and massive.dims.tolist() == [2] and massive.values.tolist() == [-500.0]
    massive, near = detect(h, mask, torch.tensor([1.0]), abs_threshold=100, rel_threshold=1000)
    assert len(massive.values) == 0 and near.dims.tolist() == [2]


@pytest.mark.parametrize("kind", ["toy-gpt2", "toy-llama"])
def test_planted_activation_is_detected_exactly_and_nothing_else(kind):
    layer, dim, value = 1, 5, 1000.0
    model = load_toy(kind, seed=1, plant=[(layer, dim, value)])
    corpus = text_corpus(model, ["The cat sat on the mat.", "Dogs bark loudly at night", "Hi"], prepend_bos=True)
    result = scan(model, corpus, progress=False)
    n_layers = model.cfg.n_layers
    expected = {(l, s, 0, dim) for l in range(layer, n_layers) for s in range(3)}
    found = {(e.layer, e.sequence, e.position, e.dim) for e in result.massive}
    assert found == expected
    assert all(e.value == pytest.approx(value, rel=1e-5) for e in result.massive)
    assert result.near_massive_total == 0
    assert result.summary["first_layer"] == layer
    assert [d["dim"] for d in result.summary["dims"]] == [dim]
    assert result.layer(layer - 1).n_massive == 0


def test_pads_never_enter_statistics():
    """In toy-llama the planted marker rides on the BOS id, which is also the pad id: pads would be
    'massive' if they were not excluded."""
    model = load_toy("toy-llama", seed=1, plant=[(0, 5, 800.0)])
    corpus = text_corpus(model, ["a much longer sentence than the other one", "short"], prepend_bos=True)
    batched = scan(model, corpus, batch_size=2, progress=False)
    single = scan(model, corpus, batch_size=1, progress=False)
    assert {(e.sequence, e.position) for e in batched.massive} == {(0, 0), (1, 0)}
    for a, b in zip(batched.layers, single.layers):
        assert a.per_sequence["median"] == pytest.approx(b.per_sequence["median"], rel=1e-5)
        assert np.allclose(a.per_sequence["top_values"], b.per_sequence["top_values"], rtol=1e-5)


def test_scan_statistics_equal_an_independent_computation():
    model = load_toy("toy-gpt2", seed=2, plant=[(1, 9, 300.0)])
    from mi_massive.core.loading import build_toy_hf, plant_massive_activation

    reference = build_toy_hf("toy-gpt2", seed=2)
    plant_massive_activation(reference, 1, 9, 300.0)
    corpus = text_corpus(model, ["Summer is warm. Winter is cold."], prepend_bos=False)
    result = scan(model, corpus, top_k=3, progress=False)
    outs = hf_block_outputs(reference, torch.tensor(corpus.sequences))
    for layer, h in enumerate(outs):
        a = h[0].abs().numpy()
        rec = result.layer(layer)
        assert rec.median == pytest.approx(float(np.median(a)), rel=1e-5)
        assert rec.top_values == pytest.approx(sorted(a.ravel())[::-1][:3], rel=1e-5)
        assert rec.dim_max == pytest.approx(a.max(0).tolist(), rel=1e-5, abs=1e-7)
        assert rec.ratio == pytest.approx(a.max() / np.median(a), rel=1e-4)


def test_overflow_in_float16_is_reported_not_hidden():
    model = load_toy("toy-gpt2", seed=0, plant=[(1, 5, 1e5)], dtype="float16")  # 1e5 > float16 max 65,504
    corpus = text_corpus(model, "The cat sat", prepend_bos=True)
    with pytest.raises(NumericalOverflowError, match="inf/NaN.*float32"):
        scan(model, corpus, progress=False)


def test_bad_options(toy_gpt2):
    corpus = text_corpus(toy_gpt2, "abc")
    with pytest.raises(MiMassiveError, match="top_k"):
        scan(toy_gpt2, corpus, top_k=0, progress=False)
    with pytest.raises(MiMassiveError, match="top_k"):
        scan(toy_gpt2, corpus, top_k=10_000, progress=False)


def test_json_round_trip(tmp_path):
    model = load_toy("toy-llama", seed=0, plant=[(2, 3, 2000.0)])
    result = scan(model, text_corpus(model, ["one two three", "four"], prepend_bos=True), progress=False)
    path = result.save(tmp_path / "scan.json")
    again = ScanResult.load(path)
    assert again == result
    assert again.massive_coordinates() == [(2, 0, 3)]


@pytest.mark.slow
def test_smollm2_scan_equals_plain_transformers(smollm2):
    """Scan values equal the block outputs of an independently loaded transformers model (rel 1e-4)."""
    from transformers import AutoModelForCausalLM

    from mi_massive.core.loading import model_info

    folder = model_info(smollm2).extra["converted_copy"]
    reference = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    corpus = text_corpus(smollm2, ["Summer is warm. Winter is cold.", "The capital of France is Paris"],
                         prepend_bos=False)
    result = scan(smollm2, corpus, top_k=3, progress=False)
    for seq_index, seq in enumerate(corpus.sequences):
        outs = hf_block_outputs(reference, torch.tensor([seq]))
        for layer, h in enumerate(outs):
            a = h[0].abs()
            rec = result.layer(layer)
            top = a.flatten().topk(3).values.tolist()
            assert np.allclose(rec.per_sequence["top_values"][seq_index], top, rtol=1e-4)
            assert rec.per_sequence["median"][seq_index] == pytest.approx(float(np.median(a.numpy())), rel=1e-4)
    # the known massive activation: dim 507 at position 0, ~23,000 from block 11 on, median ~1.7
    assert result.summary["first_layer"] == 11
    top = result.layer(11)
    assert top.per_sequence["top_dims"][0][0] == 507 and top.per_sequence["top_positions"][0][0] == 0
    assert 20_000 < top.per_sequence["top_values"][0][0] < 26_000
    assert 1.0 < top.per_sequence["median"][0] < 2.5
    assert 507 in {d["dim"] for d in result.summary["dims"]}


@pytest.mark.slow
def test_smollm2_builtin_corpus_scan_finds_dim_507(smollm2):
    corpus = builtin_corpus(smollm2, n_samples=3, seq_len=64, seed=0)
    result = scan(smollm2, corpus, progress=False)
    assert result.summary["dims"][0]["dim"] == 507
    assert [r["position"] for r in result.summary["positions"]] == [0]


def test_attention_scores_with_masked_minus_inf_are_not_an_overflow(toy_llama):
    from mi_massive.core.engine import run_capture

    ids = torch.tensor([text_corpus(toy_llama, "abcdef").sequences[0]])
    _, acts = run_capture(toy_llama, ids, ["blocks.0.attn.hook_attn_scores"])
    scores = acts["blocks.0.attn.hook_attn_scores"]
    assert torch.isneginf(scores).any() and not torch.isnan(scores).any()


def test_nan_in_a_float32_model_is_reported_as_the_model_s_own():
    from mi_massive.core.engine import check_finite

    bad = torch.zeros(1, 2, 3)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(NumericalOverflowError, match="model itself"):
        check_finite("blocks.0.hook_resid_post", bad, torch.ones(1, 2, dtype=torch.bool), torch.float32)
    with pytest.raises(NumericalOverflowError, match="float32"):
        check_finite("blocks.0.hook_resid_post", bad, None, torch.float16)


def test_summary_is_typed_and_keeps_dict_reads(tmp_path):
    import mi_massive as mm
    from mi_massive.analyses.scan.record import DimSummary, LayerPerSequence, ScanSummary

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    result = mm.scan(model, mm.text_corpus(model, ["The cat sat.", "A dog ran."], prepend_bos=True), progress=False)
    s = result.summary
    assert isinstance(s, ScanSummary) and isinstance(s.dims[0], DimSummary)
    assert s.first_layer == s["first_layer"] == s.get("first_layer") == 1
    assert s.dims[0].dim == s["dims"][0]["dim"] == 5
    assert [p.position for p in s.positions] == [0] and s.n_entries == len(result.massive)
    assert isinstance(result.layers[0].per_sequence, LayerPerSequence)
    assert result.layers[0].per_sequence["median"] == result.layers[0].per_sequence.median
    again = type(result).load(result.save(tmp_path / "scan.json"))
    assert type(again) is ScanResult and again == result and isinstance(again.summary.dims[0], DimSummary)
    df = result.to_dataframe()
    assert list(df.columns) == ["layer", "hook", "label", "top1", "top1_max", "median", "ratio", "n_massive",
                                "massive_dims"]
    assert df["layer"].tolist() == [-1, 0, 1, 2]
    assert result.massive_dataframe()["dim"].tolist() == [5] * len(result.massive)


def test_accelerator_median_rule_equals_numpy():
    """The kthvalue medians used on GPUs (``_middle``) follow numpy's rule exactly, odd and even counts."""
    import numpy as np

    from mi_massive.analyses.scan.median import _middle

    gen = torch.Generator().manual_seed(0)
    for n in (7, 8, 4096, 4097):
        x = torch.randn(3, n, generator=gen).abs()
        want = torch.tensor([float(np.median(row.numpy())) for row in x])
        assert torch.equal(_middle(x), want), n
