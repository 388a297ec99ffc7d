"""Corpora: deterministic chunking, BOS handling, padding, file encodings and error cases."""

from __future__ import annotations

import pytest
import torch

from mi_massive.core.corpus import (builtin_corpus, builtin_text, chunk_tokens, file_corpus, load_corpus, text_corpus,
                             wikitext_corpus)
from mi_massive.errors import MiMassiveError


def test_chunking_is_deterministic_and_non_overlapping():
    tokens = list(range(1000))
    a = chunk_tokens(tokens, seq_len=50, n_samples=5, seed=7, prepend_bos=True, bos_token_id=-1, name="t")
    b = chunk_tokens(tokens, seq_len=50, n_samples=5, seed=7, prepend_bos=True, bos_token_id=-1, name="t")
    c = chunk_tokens(tokens, seq_len=50, n_samples=5, seed=8, prepend_bos=True, bos_token_id=-1, name="t")
    assert a == b and a != c
    assert all(len(s) == 50 and s[0] == -1 for s in a)
    bodies = [tuple(s[1:]) for s in a]
    assert all(body[0] % 49 == 0 and list(body) == list(range(body[0], body[0] + 49)) for body in bodies)
    assert len({body[0] for body in bodies}) == 5


def test_chunking_errors():
    with pytest.raises(MiMassiveError, match="fewer than n_samples"):
        chunk_tokens(list(range(10)), seq_len=5, n_samples=3, seed=0, prepend_bos=False, bos_token_id=None, name="t")
    with pytest.raises(MiMassiveError, match="n_samples must be positive"):
        chunk_tokens(list(range(10)), seq_len=5, n_samples=0, seed=0, prepend_bos=False, bos_token_id=None, name="t")


def test_text_corpus_bos(toy_gpt2):
    with_bos = text_corpus(toy_gpt2, "abc", prepend_bos=True)
    without = text_corpus(toy_gpt2, "abc", prepend_bos=False)
    assert with_bos.sequences == [[0, 98, 99, 100]] and without.sequences == [[98, 99, 100]]
    assert with_bos.describe()["prepend_bos"] is True


def test_batches_pad_on_the_right_with_a_mask(toy_gpt2):
    corpus = text_corpus(toy_gpt2, ["abcd", "ab"])
    (idx, ids, mask), = list(corpus.batches(8))
    assert list(idx) == [0, 1]
    assert ids.tolist() == [[98, 99, 100, 101], [98, 99, 0, 0]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_rejected(toy_gpt2, text):
    with pytest.raises(MiMassiveError, match="empty"):
        text_corpus(toy_gpt2, text)


def test_text_longer_than_context_is_rejected(toy_gpt2):
    with pytest.raises(MiMassiveError, match="context"):
        text_corpus(toy_gpt2, "x" * (toy_gpt2.cfg.n_ctx + 1))


def test_file_with_and_without_bom_give_the_same_tokens(toy_gpt2, tmp_path):
    body = "The quick brown fox jumps over the lazy dog. " * 20
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text(body, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + body.encode())
    a = file_corpus(toy_gpt2, plain, n_samples=3, seq_len=32, seed=1)
    b = file_corpus(toy_gpt2, bom, n_samples=3, seq_len=32, seed=1)
    assert a.sequences == b.sequences


def test_file_errors(toy_gpt2, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(MiMassiveError, match="not UTF-8"):
        file_corpus(toy_gpt2, bad, n_samples=1, seq_len=8)
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n  ")
    with pytest.raises(MiMassiveError, match="empty"):
        file_corpus(toy_gpt2, blank, n_samples=1, seq_len=8)
    with pytest.raises(MiMassiveError, match="not found"):
        file_corpus(toy_gpt2, tmp_path / "nope.txt")
    with pytest.raises(MiMassiveError, match="unknown corpus"):
        load_corpus(toy_gpt2, "no-such-corpus")
    with pytest.raises(MiMassiveError, match="larger than the model's context"):
        load_corpus(toy_gpt2, "builtin", seq_len=toy_gpt2.cfg.n_ctx + 1)


def test_builtin_corpus_is_offline_prose_and_deterministic(toy_gpt2):
    text = builtin_text()
    assert len(text) > 100_000 and "statement" in text
    a = builtin_corpus(toy_gpt2, n_samples=4, seq_len=64, seed=3, prepend_bos=True)
    b = builtin_corpus(toy_gpt2, n_samples=4, seq_len=64, seed=3, prepend_bos=True)
    assert a.sequences == b.sequences and all(s[0] == 0 and len(s) == 64 for s in a.sequences)
    assert a.source["module"] == "pydoc_data.topics"


def test_wikitext_reads_the_local_copy(toy_gpt2, wikitext_dir):
    corpus = wikitext_corpus(toy_gpt2, "test", n_samples=3, seq_len=64, seed=0)
    assert corpus.source["path"].endswith("test.txt") and len(corpus) == 3
    text = (wikitext_dir / "test.txt").read_text(encoding="utf-8-sig")
    assert not text.startswith("\ufeff")
    # the first window of the chosen ones decodes back to a substring of the file
    decoded = toy_gpt2.tokenizer.decode(corpus.sequences[0])
    assert decoded in text


def test_padding_never_reaches_the_model_output(toy_gpt2):
    """Right padding: a padded row's real positions equal the unpadded run exactly."""
    long, short = "abcdefgh", "abc"
    corpus = text_corpus(toy_gpt2, [long, short])
    (_, ids, mask), = list(corpus.batches(2))
    with torch.no_grad():
        padded = toy_gpt2(ids)[1, :3]
        alone = toy_gpt2(torch.tensor([corpus.sequences[1]]))[0]
    assert torch.allclose(padded, alone, atol=1e-5)


def test_auto_batch_size_keeps_about_2048_tokens_per_pass(toy_gpt2):
    corpus = builtin_corpus(toy_gpt2, n_samples=4, seq_len=512, seed=0)
    assert corpus.auto_batch_size() == 4
    assert builtin_corpus(toy_gpt2, n_samples=2, seq_len=64, seed=0).auto_batch_size() == 32
    assert corpus.auto_batch_size(tokens_per_batch=100) == 1
