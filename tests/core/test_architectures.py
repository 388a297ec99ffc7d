"""The architecture matrix: every toy (``TOY_KINDS``) checked against its own plain ``transformers`` model.

For each architecture: the scan's per-sequence statistics equal those computed from the HF model's own
block outputs (an independent model built from the same seed, read with plain forward hooks); a planted
massive entry is detected exactly (layer, position, dim, value); the exact attribution sums to the residual
and names the planted MLP. The outcome (works / refused and why, never a traceback) is written to
``docs/architectures.md`` by :func:`write_matrix`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mi_massive as mm
from hf_reference import block_outputs
from mi_massive.core.loading import build_toy_hf, load_toy
from mi_massive.core.loading.toy import TOY_KINDS, plant_family
from mi_massive.errors import MiMassiveError

TEXTS = ["The cat sat on the mat.", "A dog ran in the park!!"]  # same length: no padding
PLANT = (1, 5, 20000.0)  # > 1000 x the median |h| of every toy (Gemma scales its embeddings by 8)
DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"
FEATURES = {
    "toy-gpt2": "LayerNorm, learned positions, biases",
    "toy-llama": "RMSNorm, RoPE, grouped-query attention, gated SiLU MLP",
    "toy-mistral": "Llama layout (Mistral classes)",
    "toy-qwen2": "q/k/v biases",
    "toy-gemma2": "sandwich post-norms, sqrt(d) embedding scale, logit soft-capping, 8-token sliding window",
    "toy-gemma3": "post-norms, scaled embeddings, q/k norms, sliding/global layers",
    "toy-olmo2": "post-sublayer norms only, q/k norms",
    "toy-phi3": "fused qkv and gate/up projections",
    "toy-gpt-neox": "parallel attention+MLP, 25% rotary",
    "toy-gptj": "parallel block with one LayerNorm, partial rotary",
    "toy-opt": "learned positions (offset 2), ReLU MLP",
    "toy-falcon": "parallel block, multi-query attention (biases on)",
}
CHECKS = ("scan = HF hidden states", "planted entry detected", "attribution exact")


def _hf_block_outputs(kind: str, seed: int, ids: torch.Tensor, plant=None) -> list[torch.Tensor]:
    """Block outputs of a never-bridged HF model with the same weights, read by forward hooks on its blocks."""
    hf = build_toy_hf(kind, seed=seed)
    if plant is not None:
        mm.plant_massive_activation(hf, *plant)
    family = plant_family(hf)
    blocks = {"gpt2": lambda: hf.transformer.h, "gptj": lambda: hf.transformer.h, "falcon": lambda: hf.transformer.h,
              "gpt_neox": lambda: hf.gpt_neox.layers, "opt": lambda: hf.model.decoder.layers}.get(
        family, lambda: hf.model.layers)()
    return block_outputs(hf, blocks, ids)


def check_scan(kind: str, seed: int = 1) -> str:
    model = load_toy(kind, seed=seed)
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    res = mm.scan(model, corpus, progress=False)
    outs = _hf_block_outputs(kind, seed, torch.tensor(corpus.sequences))
    for layer, hidden in enumerate(outs):
        stats = next(r for r in res.layers if r.layer == layer)
        for seq in range(len(TEXTS)):
            a = hidden[seq].abs().flatten().double().numpy()
            want_top = np.sort(a)[::-1][: len(stats.per_sequence.top_values[seq])]
            np.testing.assert_allclose(stats.per_sequence.top_values[seq], want_top, rtol=1e-4)
            np.testing.assert_allclose(stats.per_sequence.median[seq], np.median(a), rtol=1e-4)
    return "works"


def check_planted(kind: str, seed: int = 1) -> str:
    layer, dim, value = PLANT
    model = load_toy(kind, seed=seed, plant=[PLANT])
    res = mm.scan(model, mm.text_corpus(model, TEXTS, prepend_bos=True), progress=False)
    found = {(e.layer, e.position, e.dim) for e in res.massive}
    expected = {(lyr, 0, dim) for lyr in range(layer, model.cfg.n_layers)}
    assert found == expected, f"{kind}: massive entries {sorted(found)} != {sorted(expected)}"
    assert all(e.value == pytest.approx(value, rel=1e-4) for e in res.massive if e.layer == layer)
    assert res.summary.first_layer == layer
    return "works"


def check_attribution(kind: str, seed: int = 1) -> str:
    layer, dim, value = PLANT
    model = load_toy(kind, seed=seed, plant=[PLANT])
    corpus = mm.text_corpus(model, TEXTS, prepend_bos=True)
    res = mm.attribute(model, corpus, model.cfg.n_layers - 1, 0, dim)
    assert res.rel_error < 1e-4 and res.residual == pytest.approx(value, rel=1e-4)
    assert res.top(1)[0].label == f"MLP{layer}"
    other = mm.attribute(model, corpus, 1, 3, 11)  # an ordinary entry: many nonzero terms
    assert other.rel_error < 1e-4
    assert sum(c.value for c in other.terms()) == pytest.approx(other.residual, rel=1e-4, abs=1e-6)
    norms = res.provenance["options"].get("linearised_norms")
    return "works" + (f" (post-norms {', '.join(norms)} linearised at the frozen scale)" if norms else "")


RUNNERS = {CHECKS[0]: check_scan, CHECKS[1]: check_planted, CHECKS[2]: check_attribution}


def cell(kind: str, check: str) -> str:
    """'works ...' or 'refused: <one line>' (a user error) or 'FAILS: <one line>' (a bug)."""
    try:
        return RUNNERS[check](kind)
    except MiMassiveError as err:
        return f"refused: {str(err).splitlines()[0]}"
    except Exception as err:  # noqa: BLE001 (recorded in one line, and fails the test)
        return f"FAILS: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def write_matrix(rows: dict[str, dict[str, str]], path: Path = DOC) -> str:
    lines = [
        "# Architecture matrix",
        "",
        "Generated by `tests/core/test_architectures.py` (`write_matrix`): every toy (`mm.load_toy(kind)`,",
        "random weights from the `transformers` config class, no download) against its own plain",
        "`transformers` model. *scan = HF hidden states*: per-sequence top-3 |h| and median |h| of every",
        "block output equal those of the HF model's block outputs (rel 1e-4). *planted entry detected*:",
        f"`plant=[{PLANT}]` is found exactly at (layer >= {PLANT[0]}, position 0, dim {PLANT[1]}) and nowhere else.",
        "*attribution exact*: `mm.attribute` terms sum to the residual (rel 1e-4) and the planted MLP is the",
        "top term. Post-sublayer norms are linearised at the RMS scale the forward used (exact for that",
        "forward; recorded in the attribution's `provenance.options.linearised_norms` and `note`).",
        "",
        "| architecture | features | " + " | ".join(CHECKS) + " |",
        "|---|---|" + "---|" * len(CHECKS),
    ]
    for kind, cells in rows.items():
        arch = type(build_toy_hf(kind)).__name__
        lines.append(f"| `{kind}` ({arch}) | {FEATURES.get(kind, '')} | "
                     + " | ".join(cells[c].replace("|", "/") for c in CHECKS) + " |")
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return text


@pytest.mark.parametrize("kind", TOY_KINDS)
def test_architecture(kind):
    for check, runner in RUNNERS.items():
        runner(kind)  # raises with the real assertion on failure


def test_matrix_document():
    rows = {kind: {check: cell(kind, check) for check in CHECKS} for kind in TOY_KINDS}
    text = write_matrix(rows)
    assert "Traceback" not in text
    bad = [(k, c, v) for k, r in rows.items() for c, v in r.items() if v.startswith("FAILS")]
    assert not bad, bad
