"""Token classes on the planted toy: only position 0 is massive; the record round-trips with its JSON keys."""

from __future__ import annotations

import json

import pytest

from mi_massive.analyses.tokens import TokenClass, TokensResult, WordComparison, figures, tokens
from mi_massive.core.corpus import load_corpus
from mi_massive.core.loading import load_toy


@pytest.fixture(scope="module")
def result():
    bridge = load_toy("toy-llama", plant=[(1, 5, 500.0)])
    corpus = load_corpus(bridge, "builtin", n_samples=3, seq_len=24, prepend_bos=True)
    return tokens(bridge, corpus, occurrences=2, n_boot=20)


def test_only_the_start_token_is_massive(result):
    by = {c.class_: c for c in result.classes}
    assert by["start"].n_massive == by["start"].n_tokens == 3 and by["start"].rate == 1.0
    assert by["delimiter"].n_massive == 0 and by["other"].n_massive == 0
    assert result.top_tokens[0].n_massive >= 3 and result.non_initial == []


def test_tokens_record_round_trip_and_table(result, tmp_path):
    saved = json.loads(result.save(tmp_path / "tokens.json").read_text())
    assert saved["classes"][0]["class"] == "start" and "class_" not in saved["classes"][0]
    back = TokensResult.load(tmp_path / "tokens.json")
    assert isinstance(back.words, WordComparison) and isinstance(back.classes[0], TokenClass)
    assert back.classes == result.classes and back.words.metric_names == result.words.metric_names
    df = back.to_dataframe()
    assert list(df.columns) == ["class", "n_tokens", "n_massive", "rate", "rate_ci95"]
    assert df["class"].tolist() == ["start", "delimiter", "other"]
    assert list(figures(back)) == ["tokens_words"]


def test_word_figure_says_why_a_panel_is_empty(result):
    """On the toy no word type reaches the needed occurrences: every panel says so instead of showing bare axes."""
    fig = figures(result)["tokens_words"]
    assert result.words.n_types == {"function": 0, "content": 0}
    notes = [a for a in fig.layout.annotations if a.text.startswith("no word type here")]
    assert len(notes) == len(result.words.metric_names) == 4
    assert f"each needs {result.words.occurrences_per_type} occurrences" in notes[0].text
    assert [(a.xref, a.yref) for a in notes] == [("x domain", "y domain"), ("x2 domain", "y2 domain"),
                                                 ("x3 domain", "y3 domain"), ("x4 domain", "y4 domain")]
