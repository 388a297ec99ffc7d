"""Vision models from the CLI: ``--corpus images`` (generated images), scan / heads / intervene, one-line refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mi_massive.cli import app


def _run(*args):
    return CliRunner().invoke(app, list(args))


def test_scan_and_heads_of_a_vit_with_registers_equal_the_api(tmp_path):
    import mi_massive as mm

    r = _run("scan", "--model", "toy-vit-reg", "--corpus", "images", "--n-samples", "3", "--seed", "1",
             "--no-figures", "--out", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "s" / "scan.json").read_text())
    model = mm.load_model("toy-vit-reg")
    corpus = mm.image_corpus(model, n_images=3, seed=1)
    want = mm.scan(model, corpus, progress=False)
    assert [layer["top_values"][0] for layer in got["layers"]] == pytest.approx(
        [layer.top_values[0] for layer in want.layers], rel=1e-6)
    assert got["provenance"]["corpus"]["source"]["kind"] == "synthetic images"

    r = _run("heads", "--model", "toy-vit-reg", "--corpus", "images", "--n-samples", "3", "--seed", "1",
             "--out", str(tmp_path / "h"))
    assert r.exit_code == 0, r.output
    assert "register tokens" in r.output
    reg = json.loads((tmp_path / "h" / "heads_registers.json").read_text())
    api = mm.vision_heads(model, corpus, groups=("registers",))["registers"]
    assert [h["to_massive"] for h in reg["heads"]] == pytest.approx([h.to_massive for h in api.heads], rel=1e-6)


@pytest.mark.parametrize("args, message", [
    (["scan", "--model", "toy-vit-reg", "--corpus", "builtin"], "a vision model reads images, not 'builtin'"),
    (["scan", "--model", "toy-llama", "--corpus", "images"], "corpus 'images' is for vision models"),
])
def test_wrong_corpus_kind_is_one_line(tmp_path, args, message):
    r = _run(*args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
