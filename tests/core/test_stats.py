"""Statistics of the mechanism analyses on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mi_massive.analyses.mlp.neurons import carriers
from mi_massive.core.stats import chunk_nll, paired_ratio_ci, perplexity, ppl_with_ci, token_nll
from mi_massive.analyses.svd.linalg import ols, r2_bootstrap_ci
from mi_massive.analyses.tokens.metrics import (cohens_d, compare_groups, mean_pairwise_cosine, top_share, wilson_ci,
                                        word_metrics)
from mi_massive.analyses.tokens.wordlists import is_delimiter, word_group


def test_wilson_interval_known_values():
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_ci(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_cohens_d_and_group_tests():
    assert cohens_d([1, 2, 3], [4, 5, 6]) == pytest.approx(-3.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400)
    r = compare_groups(x, y, n_boot=500)
    assert r["d_ci95"][0] < r["d"] < r["d_ci95"][1] and 0.8 < r["d"] < 1.2
    assert r["welch_p"] < 1e-20 and r["mw_p"] < 1e-20 and 0.7 < r["auc"] < 0.8
    from scipy import stats
    assert r["welch_t"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).statistic)
    sep = compare_groups([10, 11, 12], [1, 2, 3], n_boot=100)
    assert sep["auc"] == 1.0
    same = compare_groups(rng.normal(0, 1, 300), rng.normal(0, 1, 300), n_boot=500)
    assert abs(same["d"]) < 0.3 and same["d_ci95"][1] - same["d_ci95"][0] < 0.4


def test_word_metric_primitives():
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])) == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0)
    assert top_share(torch.tensor([3.0, 1.0, 0.0, 0.0]), 1) == pytest.approx(0.75)
    # occurrences varying only along u_1: all left variance in component 1, alignment = cos of the rows
    U = torch.eye(4)
    h = torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [3.0, 0, 0, 0]])
    m = word_metrics(h, U, torch.tensor([4.0, 3.0, 2.0, 1.0]), U[:, 0])
    assert m["concentration"] == pytest.approx(1.0) and m["alignment"] == pytest.approx(1.0)
    assert m["asymmetry"] == pytest.approx(1.0) and m["stability"] == pytest.approx(1.0)


def test_word_groups_and_delimiters():
    assert word_group(" the", " cat", previous=" of") == "function"
    assert word_group(" cat", ".", previous=" the") == "content"
    assert word_group(" cat", "egory", previous=" the") is None  # word continues
    assert word_group("ory", " is", previous=" categ") is None  # word piece
    assert word_group(" 1999", ",", previous=" in") is None
    assert is_delimiter(".") and is_delimiter("\n") and is_delimiter(" (") and not is_delimiter(" a")


def test_carriers_counts():
    c = carriers(torch.tensor([60.0, 30.0, 10.0, 0.0]))
    assert c["total"] == pytest.approx(100.0) and c["n_50"] == 1 and c["n_90"] == 2
    neg = carriers(torch.tensor([-5.0, -80.0, 5.0, -20.0]))
    assert neg["total"] == pytest.approx(-100.0) and neg["n_50"] == 1 and neg["n_90"] == 2
    assert neg["positive"] == pytest.approx(-105.0) and neg["negative"] == pytest.approx(5.0)


def test_ols_and_r2_ci():
    x = np.arange(10.0)
    fit = ols(x, 3 * x + 2)
    assert (fit.slope, fit.intercept, fit.r2) == pytest.approx((3.0, 2.0, 1.0))
    assert ols(np.ones(5), np.arange(5.0)).r2 is None
    rng = np.random.default_rng(1)
    xs = rng.normal(size=500)
    ys = xs + rng.normal(size=500)  # population R^2 = 0.5
    lo, hi = r2_bootstrap_ci(xs, ys, n_boot=500)
    assert lo < ols(xs, ys).r2 < hi and 0.35 < lo and hi < 0.65 and hi - lo < 0.2


def test_perplexity_of_uniform_logits_is_vocab_size():
    logits = torch.zeros(3, 6, 11)
    ids = torch.randint(0, 11, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False  # a padded row: 3 targets fewer
    nll, scored = token_nll(logits, ids, mask)
    assert scored.sum() == 5 + 5 + 3 and torch.allclose(nll[scored], torch.full((13,), math.log(11), dtype=torch.float64))
    sums, counts = chunk_nll(logits, ids, mask)
    assert counts == [5, 5, 3] and perplexity(sums, counts) == pytest.approx(11.0)
    est = ppl_with_ci(sums, counts, n_boot=200)
    assert est.ppl == pytest.approx(11.0) and est.ci_low == pytest.approx(11.0) and est.ci_high == pytest.approx(11.0)


def test_perplexity_weights_tokens_and_paired_ratio():
    sums, counts = [10.0, 30.0], [10, 10]
    assert perplexity(sums, counts) == pytest.approx(math.exp(2.0))
    r, lo, hi = paired_ratio_ci((sums, counts), (sums, counts), n_boot=100)
    assert r == lo == hi == 1.0
    r, lo, hi = paired_ratio_ci((sums, counts), ([20.0, 40.0], counts), n_boot=100)
    assert r == pytest.approx(math.exp(1.0)) and lo == pytest.approx(math.exp(1.0))
