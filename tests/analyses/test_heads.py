"""Head sink scores equal the same mean computed from plain HF attention probabilities."""

from __future__ import annotations

import pytest
import torch

from mi_massive.analyses.heads.scores import sink_scores
from mi_massive.core.corpus import text_corpus
from mi_massive.core.loading import build_toy_hf
from mi_massive.analyses.heads.run import head_scores

TEXTS = ["The cat sat on the mat.", "Summer is warm. Winter is cold!", "Hi there"]


@pytest.mark.parametrize("fixture,kind", [("toy_gpt2", "toy-gpt2"), ("toy_llama", "toy-llama")])
def test_scores_match_hf_attentions(request, fixture, kind):
    model = request.getfixturevalue(fixture)
    corpus = text_corpus(model, TEXTS, prepend_bos=True)
    keysets = [[0], [0, 3], [2]]
    res = head_scores(model, corpus, massive_positions=keysets, batch_size=2, budget_mb=0.001, progress=False)
    hf = build_toy_hf(kind, seed=0)
    per_seq_first, per_seq_mass = [], []
    for seq, keys in zip(corpus.sequences, keysets):  # one unpadded sequence at a time
        with torch.no_grad():
            att = hf(torch.tensor([seq]), output_attentions=True).attentions  # L x [1, H, q, k]
        per_seq_first.append(torch.stack([a[0, :, 1:, 0].mean(-1) for a in att]))
        per_seq_mass.append(torch.stack([a[0, :, 1:][..., keys].sum(-1).mean(-1) for a in att]))
    first = torch.stack(per_seq_first, -1)  # [L, H, seq]
    mass = torch.stack(per_seq_mass, -1)
    torch.testing.assert_close(torch.tensor(res.per_sequence_first), first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(res.per_sequence_massive), mass, atol=1e-5, rtol=1e-4)
    h = res.heads[5]
    assert h.to_first == pytest.approx(first[h.layer, h.head].mean().item(), abs=1e-6)
    assert h.to_first_ci95[0] <= h.to_first <= h.to_first_ci95[1]
    ranked = res.ranking()
    assert res.top_k(2) == [(r.layer, r.head) for r in ranked[:2]]
    assert res.bottom_k(1) == [(ranked[-1].layer, ranked[-1].head)]
    assert ranked[0].to_first >= ranked[-1].to_first


def test_sink_scores_excludes_query0_and_pads():
    p = torch.zeros(1, 1, 4, 4)
    p[0, 0, 0, 0] = 1.0
    p[0, 0, 1] = torch.tensor([0.5, 0.5, 0, 0])
    p[0, 0, 2] = torch.tensor([0.2, 0.3, 0.5, 0])
    p[0, 0, 3] = torch.tensor([0.9, 0.0, 0.0, 0.1])  # a pad query: ignored
    mask = torch.tensor([[True, True, True, False]])
    assert sink_scores(p, mask, [[0]]).item() == pytest.approx(0.35)
    assert sink_scores(p, mask, [[0, 2]]).item() == pytest.approx((0.5 + 0.7) / 2)
    assert sink_scores(p, mask, [[]]).isnan().all()


def test_head_scores_round_trip_and_table(tmp_path):
    import mi_massive as mm
    from mi_massive.analyses.heads.record import HeadScores

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    res = mm.heads(model, mm.text_corpus(model, ["The cat sat.", "A dog ran."], prepend_bos=True), progress=False)
    again = HeadScores.load(res.save(tmp_path / "heads.json"))
    assert type(again) is HeadScores and again == res
    df = res.to_dataframe()
    assert list(df.columns) == ["layer", "head", "to_first", "to_first_ci95", "to_massive", "to_massive_ci95",
                                "n_massive"]
    assert len(df) == 3 * 4 and mm.heads is head_scores
