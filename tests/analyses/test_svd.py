"""SVD of W_out: reconstruction, orientation/sign convention, and the tautology verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mi_massive.analyses.svd.linalg import oriented_svd, rank1_column_share, regression_report, spectrum_stats
from mi_massive.core.corpus import load_corpus
from mi_massive.core.loading import load_toy
from mi_massive.analyses.svd.record import SvdResult
from mi_massive.analyses.svd.run import svd_analysis


def test_reconstruction_and_sign_convention():
    torch.manual_seed(0)
    W = torch.randn(40, 12)
    for d in (0, 5, 11):
        s = oriented_svd(W, d)
        assert torch.allclose((s.U * s.S) @ s.Vt, W.double(), atol=1e-10)
        assert (s.Vt[:, d] >= 0).all()
        assert torch.allclose(s.U.T @ s.U, torch.eye(12, dtype=torch.float64), atol=1e-10)
        h = torch.randn(7, 40, dtype=torch.float64)
        # out[:, d] = sum_k S_k V^T[k, d] (h . u_k): input directions are columns of U
        assert torch.allclose(h @ W.double()[:, d], (h @ s.U) @ (s.S * s.Vt[:, d]), atol=1e-10)


def test_rank1_share_and_spectrum_on_constructed_matrix():
    u = torch.zeros(6, 2, dtype=torch.float64)
    u[0, 0] = u[1, 1] = 1.0
    v = torch.zeros(2, 4, dtype=torch.float64)
    v[0, 2] = -1.0  # negative on purpose: the sign fix must flip it
    v[1, 3] = 1.0
    W = u @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v
    s = oriented_svd(W, 2)
    st = spectrum_stats(s)
    assert st["sigma1"] == pytest.approx(3.0) and st["sigma_ratio"] == pytest.approx(3.0)
    assert st["sigma1_sq_share"] == pytest.approx(0.9) and st["vt0_dim"] == pytest.approx(1.0)
    assert rank1_column_share(s) == pytest.approx(1.0)
    assert s.U[0, 0] == pytest.approx(-1.0)  # flipped together with v_1


def test_verdicts_are_plain():
    x = np.linspace(0, 1, 50)
    taut = regression_report(x, 2 * x, expected_slope=2.0, column_share=0.99, n_distinct=50, label="other")
    assert taut["r2"] == pytest.approx(1.0) and "near-tautological" in taut["verdict"]
    one = regression_report(np.ones(5), np.full(5, 7.0), expected_slope=2.0, column_share=0.1, n_distinct=1, label="start")
    assert one["r2"] is None and "no variation" in one["verdict"]
    fine = regression_report(x, 2 * x + np.sin(40 * x), expected_slope=2.0, column_share=0.2, n_distinct=50, label="o")
    assert fine["r2_ci95"] is not None and "not implied" in fine["verdict"]


def test_svd_pipeline_on_planted_toy(tmp_path):
    b = load_toy("toy-llama", plant=[(1, 5, 500.0)])
    c = load_corpus(b, "builtin", n_samples=3, seq_len=24, prepend_bos=True)
    r = svd_analysis(b, c, layer=1, n_boot=100)
    assert r.dim == 5 and r.spectrum.vt0_dim > 0
    # the planted neuron's W_out row (only dim 5) is by far the largest singular direction
    assert r.alignment.massive_tokens.cos_mean > 0.99
    assert r.regression.fits["start"].r2 is None  # BOS at position 0: one distinct input
    assert "no variation" in r.regression.fits["start"].verdict
    back = SvdResult.load(r.save(tmp_path / "svd.json"))
    assert isinstance(back, SvdResult) and back.spectrum == r.spectrum and back.alignment == r.alignment
    assert set(back.alignment.by_class()) == {"start", "other"}
    assert list(back.to_dataframe().columns) == ["k", "sigma", "vt_k_dim", "weight"]


def test_collinear_inputs_are_flagged():
    from mi_massive.analyses.svd.linalg import input_rank1_share

    w = torch.randn(10)
    h = torch.arange(1.0, 6.0)[:, None] * w[None, :]
    assert input_rank1_share(h) == pytest.approx(1.0)
    x = (h.double() @ torch.randn(10, dtype=torch.float64)).numpy()
    rep = regression_report(x, 3 * x + 1, expected_slope=1.0, column_share=0.1, n_distinct=5, label="start",
                            input_share=input_rank1_share(h))
    assert "one direction" in rep["verdict"]
