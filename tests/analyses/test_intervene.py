"""Intervention pipeline on a planted toy, and perplexity on SmolLM2 against an independent HF computation."""

from __future__ import annotations

import json

import pytest
import torch

from mi_massive.core.stats import chunk_nll, perplexity
from mi_massive.core.corpus import load_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.loading import load_toy
from mi_massive.analyses.intervene.record import InterventionResult, InterventionRun
from mi_massive.analyses.intervene.run import check_disjoint, intervene, split_corpus
from mi_massive.core.engine import run_capture


@pytest.fixture(scope="module")
def planted_llama():
    return load_toy("toy-llama", plant=[(1, 5, 500.0)])


def test_intervene_on_planted_toy(planted_llama, tmp_path):
    corpus = load_corpus(planted_llama, "builtin", n_samples=6, seq_len=24, prepend_bos=True)
    ev, cal = split_corpus(corpus, 3)
    r = intervene(planted_llama, ev, cal, n_control=1, n_boot=100)
    assert r.first_layer == 1 and r.dims == [5] and r.edited_layers_all == [1, 2]
    assert r.evaluation.n_massive_positions == 3 and r.evaluation.n_start_positions == 3
    assert [m.mean for m in r.calibration.means] == pytest.approx([500.0, 500.0])
    assert r.run("mean (one layer)").nll_sums == pytest.approx(r.run("original").nll_sums, rel=1e-6)
    zero = r.run("zero (one layer)").regeneration["start"]
    assert zero.post[0] == 0.0  # the edited value is what the next block reads
    assert zero.pre[0] == pytest.approx(500.0, rel=1e-5)  # block 1 itself still computed it
    assert zero.per_dim["5"].post == zero.post  # one massive dim: per-dim equals pooled
    every = r.run("zero (every layer)").regeneration["start"]
    assert every.post == [0.0, 0.0]
    assert set(r.calibration.control_dims["0"]).isdisjoint({5})
    assert [row.condition for row in r.table][0] == "original" and r.table[0].ratio == 1.0
    # the record round-trips through its JSON as itself, and its table is the perplexity table
    back = InterventionResult.load(r.save(tmp_path / "intervene.json"))
    assert isinstance(back, InterventionResult) and isinstance(back.runs[0], InterventionRun)
    saved = json.loads((tmp_path / "intervene.json").read_text())
    assert set(back.to_dict()["runs"][1]) == set(saved["runs"][1]) and back.runs[1].ppl == r.runs[1].ppl
    assert back.calibration.means[0].class_ == "start"
    assert "class" in json.loads((tmp_path / "intervene.json").read_text())["calibration"]["means"][0]
    df = back.to_dataframe()
    assert list(df.columns) == ["condition", "variant", "ppl", "ci95", "ratio", "ratio_ci95"]
    assert df["condition"].tolist() == [x.name for x in r.runs]


def test_calibration_must_be_disjoint(planted_llama):
    corpus = load_corpus(planted_llama, "builtin", n_samples=4, seq_len=24, prepend_bos=True)
    with pytest.raises(MiMassiveError, match="overlap"):
        check_disjoint(corpus, corpus.subset([1, 2]))
    with pytest.raises(MiMassiveError):
        split_corpus(corpus, 4)


@pytest.mark.slow
def test_smollm2_perplexity_matches_hf_logits(smollm2, wikitext_dir):
    """Unmodified model: our PPL == exp(mean CE) computed independently from bridge.original_model(ids).logits."""
    corpus = load_corpus(smollm2, str(wikitext_dir / "test.txt"), n_samples=2, seq_len=128, prepend_bos=True)
    ids = torch.tensor(corpus.sequences)
    logits, _ = run_capture(smollm2, ids, [], need_logits=True)
    ours = perplexity(*chunk_nll(logits, ids))
    with torch.no_grad():
        hf_logits = smollm2.original_model(ids).logits
    ce = torch.nn.functional.cross_entropy(hf_logits[:, :-1].reshape(-1, hf_logits.shape[-1]).double(),
                                           ids[:, 1:].reshape(-1))
    assert ours == pytest.approx(float(torch.exp(ce)), rel=1e-6)
    assert 2 < ours < 200


TWO_DIMS = [(0, 7, 300.0), (2, 5, 3000.0)]  # an early minor massive dim (7, block 0) and a later dominant one (5, block 2)


@pytest.fixture(scope="module")
def two_dim_runs():
    model = load_toy("toy-llama", plant=TWO_DIMS)
    ev, cal = split_corpus(load_corpus(model, "builtin", n_samples=6, seq_len=16, prepend_bos=True), 3)
    each = intervene(model, ev, cal, n_control=1, n_boot=20)
    earliest = intervene(model, ev, cal, n_control=1, n_boot=20, targets="earliest")
    return ev, cal, each, earliest


def _hf_two_dim():
    """The same planted toy as plain ``transformers`` modules (built and planted independently of the bridge)."""
    from mi_massive.core.loading.toy import build_toy_hf, plant_massive_activation

    hf = build_toy_hf("toy-llama", seed=0)
    for layer, dim, value in TWO_DIMS:
        plant_massive_activation(hf, layer, dim, value)
    return hf.eval()


def _hf_ppl(hf, ids, edits):
    """(exp(mean next-token CE), [block outputs]) with ``edits`` = {block: {dim: value}} written at position 0 of
    each block's output (what the next block reads)."""
    outs = []

    def hook(values):
        def fn(_m, _i, out):
            h = out[0] if isinstance(out, tuple) else out
            for d, v in values.items():
                h[:, 0, d] = v
            outs.append(h.detach().clone())
        return fn

    handles = [layer.register_forward_hook(hook(edits.get(l, {}))) for l, layer in enumerate(hf.model.layers)]
    try:
        with torch.no_grad():
            logits = hf(ids).logits
    finally:
        for h in handles:
            h.remove()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(), ids[:, 1:].reshape(-1))
    return float(torch.exp(ce)), outs


def test_each_massive_dim_at_its_own_first_layer(two_dim_runs):
    ev, cal, each, earliest = two_dim_runs
    hf = _hf_two_dim()
    ids = torch.tensor(ev.sequences)
    clean_ppl, hs = _hf_ppl(hf, ids, {})
    _, cal_hs = _hf_ppl(hf, torch.tensor(cal.sequences), {})
    v7, v5 = float(cal_hs[0][0, 0, 7]), float(cal_hs[2][0, 0, 5])  # cal_hs[l]: block l's output
    assert v5 == pytest.approx(3000.0, rel=1e-5) and v7 > 100  # both massive at position 0 (BOS)

    # default: both dims, each at its own first block; the record lists what was edited
    assert [(t.dim, t.layer, t.last_layer, t.positions, t.n_positions) for t in each.targets] == [
        (7, 0, 2, {"0": [0], "1": [0], "2": [0]}, 3), (5, 2, 2, {"0": [0], "1": [0], "2": [0]}, 3)]
    assert each.first_layer == 0 and each.dims == [5, 7] and each.provenance["options"]["targets"] == "each"
    zero = each.run("zero (one layer)")
    assert zero.layers == [0, 2] and zero.dims == [5, 7] and zero.n_edited == 6
    assert each.run("original").ppl.ppl == pytest.approx(clean_ppl, rel=1e-5)
    want, _ = _hf_ppl(hf, ids, {0: {7: 0.0}, 2: {5: 0.0}})
    assert zero.ppl.ppl == pytest.approx(want, rel=1e-5)
    # means: per (layer, dim) over the calibration positions, equal to the HF hidden states there
    means = {(m.layer, m.dim): m.mean for m in each.calibration.means}
    assert means == pytest.approx({(0, 7): v7, (1, 7): float(cal_hs[1][0, 0, 7]), (2, 7): float(cal_hs[2][0, 0, 7]),
                                   (2, 5): v5}, rel=1e-5)
    assert each.run("mean (one layer)").ppl.ppl == pytest.approx(clean_ppl, rel=1e-5)  # same value written back
    # zeroing both: what the next block reads at the edited entries is 0 at blocks 0 and 2 (and block 1
    # reads dim 7 = 0 since nothing writes it back), while block 2 itself recomputes dim 5
    regen = zero.regeneration["start"]
    assert regen.per_dim["7"].post == [0.0, 0.0, 0.0] and regen.per_dim["5"].post[2] == 0.0
    assert regen.per_dim["5"].pre[2] > 3000.0  # block 2's MLP wrote dim 5 again, larger without dim 7 in the norm
    # controls: one ordinary dim per target, at the same layers and positions
    ctrl = each.run("control 0 (one layer)")
    assert ctrl.layers == [0, 2] and len(ctrl.dims) == 2 and set(ctrl.dims).isdisjoint({5, 7})
    c0, c1 = each.calibration.control_dims["0"]
    want_ctrl, _ = _hf_ppl(hf, ids, {0: {c0: 0.0}, 2: {c1: 0.0}})
    assert ctrl.ppl.ppl == pytest.approx(want_ctrl, rel=1e-5)
    every = each.run("zero (every layer)")
    assert every.layers == [0, 1, 2] and every.n_edited == 3 * (3 + 1)  # dim 7 at blocks 0..2, dim 5 at block 2

    # "earliest": only the early minor dim, as before; the dominant dim 5 is never touched
    assert [(t.dim, t.layer) for t in earliest.targets] == [(7, 0)] and earliest.dims == [7]
    ez = earliest.run("zero (one layer)")
    assert ez.layers == [0] and ez.dims == [7] and ez.n_edited == 3
    want_early, _ = _hf_ppl(hf, ids, {0: {7: 0.0}})
    assert ez.ppl.ppl == pytest.approx(want_early, rel=1e-5)
    assert ez.ppl.ppl != pytest.approx(zero.ppl.ppl, rel=1e-4)


def test_targets_option_is_checked(planted_llama):
    corpus = load_corpus(planted_llama, "builtin", n_samples=4, seq_len=16, prepend_bos=True)
    ev, cal = split_corpus(corpus, 2)
    with pytest.raises(MiMassiveError, match="unknown targets"):
        intervene(planted_llama, ev, cal, n_control=0, n_boot=10, targets="all")


def test_no_massive_without_bos_says_so(planted_llama):
    # the planted toy writes its massive value at BOS; the toy tokenizer adds none, so "auto" finds nothing
    ev, cal = split_corpus(load_corpus(planted_llama, "builtin", n_samples=4, seq_len=16), 2)
    assert not ev.prepend_bos and ev.prepend_bos_source == "auto"
    with pytest.raises(MiMassiveError, match="BOS was not prepended"):
        intervene(planted_llama, ev, cal, n_control=0, n_boot=10)
