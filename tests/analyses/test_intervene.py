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
