"""Text corpora as deterministic token sequences (see :class:`Corpus`)."""

from mi_massive.core.corpus.corpus import Corpus, chunk_tokens
from mi_massive.core.corpus.sources import (
    BUILTIN,
    builtin_corpus,
    builtin_text,
    encode,
    file_corpus,
    load_corpus,
    read_text_file,
    text_corpus,
    wikitext_corpus,
    wikitext_dir,
    wikitext_text,
)

__all__ = [
    "BUILTIN", "Corpus", "builtin_corpus", "builtin_text", "chunk_tokens", "encode", "file_corpus", "load_corpus",
    "read_text_file", "text_corpus", "wikitext_corpus", "wikitext_dir", "wikitext_text",
]
