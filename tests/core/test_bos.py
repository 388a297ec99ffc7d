"""BOS as the tokenizer does it: ``prepend_bos="auto"`` for the API and the CLI, overrides, warning, record."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from mi_massive.core.bos import BosWarning, resolve_bos, tokenizer_adds_bos
from mi_massive.core.corpus import builtin_corpus, load_corpus, text_corpus
from mi_massive.core.loading import load_toy, toy_tokenizer
from mi_massive.core.loading.bridge import bridge_from_hf
from mi_massive.core.loading.toy import BOS_TOKEN, build_toy_hf
from mi_massive.errors import MiMassiveError


def _llama2_style_tokenizer(folder):
    """The toy byte tokenizer with a Llama-2-style post-processor: every text starts with BOS (no download)."""
    from tokenizers import processors

    tok = toy_tokenizer()
    bos_id = tok.convert_tokens_to_ids(BOS_TOKEN)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B", special_tokens=[(BOS_TOKEN, bos_id)])
    tok.save_pretrained(str(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def bos_tokenizer(tmp_path_factory):
    return _llama2_style_tokenizer(tmp_path_factory.mktemp("llama2-tok"))


@pytest.fixture(scope="module")
def bos_model(bos_tokenizer):
    """A toy Llama whose shipped tokenizer adds BOS (the bridge reloads it from its folder)."""
    return bridge_from_hf(build_toy_hf("toy-llama", seed=0), bos_tokenizer, name="toy-llama-bos")


@pytest.fixture(scope="module")
def gpt2_model():
    return load_toy("toy-gpt2")


def test_tokenizer_conventions(bos_tokenizer):
    assert bos_tokenizer("x")["input_ids"] == [0, ord("x") + 1]  # Llama-2 style: BOS first
    assert toy_tokenizer()("x")["input_ids"] == [ord("x") + 1]  # GPT-2/SmolLM2 style: no BOS
    assert tokenizer_adds_bos(bos_tokenizer) is True and tokenizer_adds_bos(toy_tokenizer()) is False


def test_auto_follows_the_shipped_tokenizer_not_the_bridge(bos_model, gpt2_model):
    # the bridge's own tokenizer is rebuilt by TransformerLens with add_bos_token=True for both models
    assert gpt2_model.tokenizer("x")["input_ids"][0] == 0 and gpt2_model.cfg.default_prepend_bos is True
    on = resolve_bos(bos_model, "auto")
    off = resolve_bos(gpt2_model, "auto")
    assert (on.prepend_bos, on.source, on.tokenizer_adds_bos) == (True, "auto", True)
    assert (off.prepend_bos, off.source, off.tokenizer_adds_bos, off.tl_default_prepend_bos) == (False, "auto", False, True)
    assert "cfg.default_prepend_bos=True not followed" in off.basis  # the cross-check is recorded, not silent
    assert resolve_bos(gpt2_model, None).prepend_bos is False  # None means auto
    with pytest.raises(MiMassiveError, match="True, False or 'auto'"):
        resolve_bos(gpt2_model, "yes")


def test_corpus_builders_default_to_auto(bos_model, gpt2_model):
    text = "The cat sat."
    ids = [ord(c) + 1 for c in text]
    with warnings.catch_warnings():
        warnings.simplefilter("error", BosWarning)  # auto never warns
        on = text_corpus(bos_model, text)
        off = text_corpus(gpt2_model, text)
        chunks = builtin_corpus(bos_model, n_samples=2, seq_len=8)
        plain = load_corpus(gpt2_model, "builtin", n_samples=2, seq_len=8)
    assert on.sequences == [[0] + ids] and on.prepend_bos is True and on.prepend_bos_source == "auto"
    assert off.sequences == [ids] and off.prepend_bos is False and off.prepend_bos_source == "auto"
    assert all(s[0] == 0 and len(s) == 8 for s in chunks.sequences) and chunks.prepend_bos_source == "auto"
    assert all(0 not in s for s in plain.sequences) and plain.describe()["prepend_bos_source"] == "auto"
    # a bare tokenizer works too
    assert text_corpus(toy_tokenizer(), text).sequences == [ids]


def test_user_override_and_warning(bos_model, gpt2_model):
    text = "Hi"
    with pytest.warns(BosWarning, match="not prepended but the model's tokenizer adds BOS"):
        c = text_corpus(bos_model, text, prepend_bos=False)
    assert c.sequences == [[73, 106]] and c.prepend_bos_source == "user"
    with pytest.warns(BosWarning, match="prepended but the model's tokenizer adds no BOS"):
        c = text_corpus(gpt2_model, text, prepend_bos=True)
    assert c.sequences == [[0, 73, 106]] and c.describe()["prepend_bos_source"] == "user"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BosWarning)
        assert text_corpus(bos_model, text, prepend_bos=True).sequences == [[0, 73, 106]]  # agrees: no warning


def test_cli_prints_records_and_warns(tmp_path):
    from mi_massive.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["scan", "--model", "toy-gpt2", "--text", "The cat sat.", "--no-figures",
                              "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("BOS: not prepended (auto: the tokenizer adds none") == 1 and "warning" not in res.stderr
    corpus = json.loads((tmp_path / "a" / "scan.json").read_text())["provenance"]["corpus"]
    assert (corpus["prepend_bos"], corpus["prepend_bos_source"]) == (False, "auto")

    res = runner.invoke(app, ["scan", "--model", "toy-gpt2", "--text", "The cat sat.", "--no-figures",
                              "--prepend-bos", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "BOS: prepended (user:" in res.stderr
    warns = [l for l in res.stderr.splitlines() if l.startswith("warning:")]
    assert warns == ["warning: BOS is prepended but the model's tokenizer adds no BOS; position 0 differs from what "
                     "the model saw in training"]
    corpus = json.loads((tmp_path / "b" / "scan.json").read_text())["provenance"]["corpus"]
    assert (corpus["prepend_bos"], corpus["prepend_bos_source"]) == (True, "user")
