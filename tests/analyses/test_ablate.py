"""Ablation experiments with a null, and (SmolLM2) attribution's writer of dim 507 agrees with ablation."""

from __future__ import annotations

import pytest
import torch

from mi_massive.core.corpus import text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks import ablate_heads, ablate_mlps
from mi_massive.core.loading import load_toy
from mi_massive.analyses.ablate.run import AblationSpec, run_ablations
from mi_massive.analyses.attribute.run import attribute
from mi_massive.core.engine import run_capture

TEXTS = ["The cat sat on the mat.", "Summer is warm. Winter is cold.", "A dog ran in the big park"]


@pytest.fixture(scope="module")
def planted():
    return load_toy("toy-gpt2", seed=5, plant=[(1, 5, 700.0)])


def test_planted_mlp_ablation_beyond_noise(planted):
    corpus = text_corpus(planted, TEXTS, prepend_bos=True)
    res = run_ablations(planted, corpus, [AblationSpec("MLP1", "mlp", [1]), AblationSpec("L0H0", "heads", [(0, 0)])],
                        tracked=[(0, 5)], n_null=20, progress=False)
    assert res.rerun_max_abs_diff == 0.0
    eff = {(c.name, e.metric, e.layer): e for c in res.conditions for e in c.effects}
    e = eff[("MLP1", "entry p0 d5", 2)]
    assert e.baseline == pytest.approx(700.0, rel=1e-4)
    assert e.mean == pytest.approx(-700.0, rel=1e-4)  # only MLP1 writes dim 5: removing it removes everything
    assert e.ci95[0] == pytest.approx(-700.0, rel=1e-4) and e.label == "beyond noise"
    assert eff[("MLP1", "entry p0 d5", 0)].mean == 0.0  # before the ablated layer: untouched
    h = eff[("L0H0", "entry p0 d5", 2)]
    assert abs(h.mean) < 1e-2 and h.within_noise is True  # heads never write dim 5 (only nudge the MLP input)
    cond = res.conditions[0]
    assert len(cond.null_sets) == 20 and all(s != [1] for s in cond.null_sets)
    assert eff[("MLP1", "top1", 1)].mean < -500


def test_resample_and_mean_modes_run_and_validate(planted):
    corpus = text_corpus(planted, TEXTS, prepend_bos=True)
    corpus.sequences = [s[:20] for s in corpus.sequences]  # resample donors must be as long
    res = run_ablations(planted, corpus, [AblationSpec("mean", "mlp", [1], mode="mean", null=False),
                                          AblationSpec("res", "neurons", {1: [0]}, mode="resample", null=False)],
                        tracked=[(0, 5)], n_null=0, progress=False)
    eff = {(c.name, e.metric, e.layer): e for c in res.conditions for e in c.effects}
    # mean over the reference corpus at position 0 is the planted write itself (700): no change
    assert eff[("mean", "entry p0 d5", 1)].mean == pytest.approx(0.0, abs=1e-2)
    # the donor's neuron 0 also fires at its position 0 (same marker): no change either
    assert eff[("res", "entry p0 d5", 1)].mean == pytest.approx(0.0, abs=1e-2)
    with pytest.raises(MiMassiveError, match="at least 20"):
        run_ablations(planted, corpus, [AblationSpec("x", "mlp", [1])], n_null=5, progress=False)
    with pytest.raises(MiMassiveError, match="unknown ablation mode"):
        run_ablations(planted, corpus, [AblationSpec("x", "mlp", [1], mode="bogus")], progress=False)
    with pytest.raises(MiMassiveError, match="empty head set"):
        run_ablations(planted, corpus, [AblationSpec("x", "heads", [])], progress=False)


@pytest.mark.slow
def test_smollm2_writer_of_507_agrees_with_ablation(smollm2):
    model = smollm2
    corpus = text_corpus(model, "The capital of France is Paris, and it is", prepend_bos=False)
    layer = 12
    res = attribute(model, corpus, layer=layer, position=0, dim=507)
    assert abs(res.residual) > 5000 and res.rel_error < 1e-4
    terms = sorted(res.terms(), key=lambda c: -abs(c.value))
    writer = terms[0]
    assert writer.kind in ("mlp", "head")
    ids = torch.tensor(corpus.sequences)
    name = f"blocks.{layer}.hook_resid_post"
    _, base = run_capture(model, ids, [name])

    def value_without(term):
        hooks = ablate_mlps(model, [term.layer]) if term.kind == "mlp" else ablate_heads(model, [(term.layer, term.index)])
        _, got = run_capture(model, ids, [name], fwd_hooks=hooks)
        return got[name][0, 0, 507].item()

    drop = base[name][0, 0, 507].item() - value_without(writer)
    assert drop * writer.value > 0 and abs(drop) >= 0.5 * abs(writer.value)
    weakest = min((c for c in res.terms() if c.kind == "mlp"), key=lambda c: abs(c.value))
    control = base[name][0, 0, 507].item() - value_without(weakest)
    assert abs(control) < 0.1 * abs(drop)


def test_mm_ablate_head_forms_agree_and_round_trip(tmp_path):
    import mi_massive as mm
    from mi_massive.analyses.ablate.record import AblationResult

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    by_name = mm.ablate(model, corpus, heads="L1H0", n_null=0, progress=False)
    by_pair = mm.ablate(model, corpus, heads=[(1, 0)], n_null=0, progress=False)
    by_dot = mm.ablate(model, corpus, heads="1.0", n_null=0, progress=False, tracked="0:5")
    from mi_massive.core.io import to_json

    assert to_json(by_name.conditions) == to_json(by_pair.conditions) == to_json(by_dot.conditions)  # NaN-safe
    assert by_name.conditions[0].name == "heads L1H0" and by_name.tracked == [[0, 5]]
    mean = mm.ablate(model, corpus, mlps="1", mode="mean", n_null=0, progress=False)  # reference computed on demand
    assert mean.conditions[0].mode == "mean"
    again = AblationResult.load(by_name.save(tmp_path / "ablation.json"))
    assert type(again) is AblationResult and to_json(again) == to_json(by_name)
    df = by_name.to_dataframe()
    assert list(df.columns) == ["condition", "kind", "mode", "metric", "layer", "baseline", "ablated", "mean",
                                "ci_low", "ci_high", "relative", "null_low", "null_high", "within_noise", "label"]
    assert len(df) == len(by_name.metrics)
    with pytest.raises(MiMassiveError, match="nothing to ablate"):
        mm.ablate(model, corpus, n_null=0, progress=False)
    with pytest.raises(MiMassiveError, match="out of range"):
        mm.ablate(model, corpus, heads="L1H9", n_null=0, progress=False)
