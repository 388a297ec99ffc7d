"""Where text comes from: a string, a file, WikiText-2, or the built-in offline default."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from mi_massive.core.corpus.corpus import Corpus, chunk_tokens
from mi_massive.errors import MiMassiveError

WIKITEXT_ENV = "MI_MASSIVE_WIKITEXT_DIR"
BUILTIN = "builtin"
WIKITEXT_SPLITS = {"wikitext-2": "test", "wikitext-2:test": "test", "wikitext-2:valid": "valid",
                   "wikitext-2:validation": "valid", "wikitext-2:train": "train"}


def _tokenizer_of(model_or_tokenizer: Any):
    return getattr(model_or_tokenizer, "tokenizer", None) or model_or_tokenizer


def _special_ids(tokenizer) -> tuple[int | None, int]:
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return bos, pad


def _resolve(model_or_tokenizer: Any, prepend_bos: bool | str | None, source: str | None) -> tuple[bool, str]:
    """(prepend BOS?, "auto"|"user"): ``"auto"``/None follows the tokenizer (:mod:`mi_massive.core.bos`); a run
    against the tokenizer's convention warns (:class:`~mi_massive.core.bos.BosWarning`) unless the caller
    resolved it already (``source`` given: the CLI prints the choice itself)."""
    from mi_massive.core.bos import resolve_and_warn, resolve_bos

    choice = (resolve_bos if source else resolve_and_warn)(model_or_tokenizer, prepend_bos)
    return choice.prepend_bos, source or choice.source


def encode(model_or_tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens (BOS handling is the corpus's job)."""
    return list(_tokenizer_of(model_or_tokenizer)(text, add_special_tokens=False)["input_ids"])


def _check_text(text: str, name: str) -> None:
    if not text or not text.strip():
        raise MiMassiveError(f"corpus '{name}' is empty or only whitespace")


def _max_len(model_or_tokenizer: Any) -> int | None:
    cfg = getattr(model_or_tokenizer, "cfg", None)
    return getattr(cfg, "n_ctx", None)


def _check_seq_len(model_or_tokenizer: Any, seq_len: int | None) -> None:
    limit = _max_len(model_or_tokenizer)
    if seq_len is not None and limit is not None and seq_len > limit:
        raise MiMassiveError(f"seq_len {seq_len} is larger than the model's context ({limit} tokens)")


def text_corpus(model_or_tokenizer: Any, texts: str | list[str], *, prepend_bos: bool | str | None = "auto",
                name: str = "text", prepend_bos_source: str | None = None) -> Corpus:
    """One sequence per text, each whole (no chunking).

    >>> import mi_massive as mm
    >>> c = text_corpus(mm.load_toy("toy-gpt2"), "Hi")
    >>> c.sequences, c.prepend_bos, c.prepend_bos_source
    ([[73, 106]], False, 'auto')

    ``prepend_bos``: ``"auto"`` (default; what the model's tokenizer does, see :func:`mi_massive.core.bos.resolve_bos`),
    True or False. ``prepend_bos_source`` overrides the recorded source (for callers that resolved "auto" themselves).
    """
    prepend_bos, bos_source = _resolve(model_or_tokenizer, prepend_bos, prepend_bos_source)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise MiMassiveError("no text given")
    tok = _tokenizer_of(model_or_tokenizer)
    bos, pad = _special_ids(tok)
    seqs = []
    for text in texts:
        _check_text(text, name)
        seqs.append(([bos] if prepend_bos else []) + encode(tok, text))
    longest = max(len(s) for s in seqs)
    limit = _max_len(model_or_tokenizer)
    if limit is not None and longest > limit:
        raise MiMassiveError(f"text is {longest} tokens long, more than the model's context ({limit})")
    digest = hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()
    return Corpus(name=name, sequences=seqs, prepend_bos=prepend_bos, seq_len=None, n_samples=len(seqs), seed=0,
                  bos_token_id=bos, pad_token_id=pad, source={"kind": "text", "sha256": digest, "texts": texts},
                  prepend_bos_source=bos_source)


def read_text_file(path: str | Path) -> str:
    """UTF-8 text of a file, without a byte-order mark; clear errors for missing or undecodable files."""
    path = Path(path)
    if not path.is_file():
        raise MiMassiveError(f"text file not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise MiMassiveError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from err


def _chunked(model_or_tokenizer: Any, text: str, *, name: str, n_samples: int, seq_len: int, seed: int,
             prepend_bos: bool | str | None, source: dict[str, Any], prepend_bos_source: str | None = None) -> Corpus:
    prepend_bos, bos_source = _resolve(model_or_tokenizer, prepend_bos, prepend_bos_source)
    _check_text(text, name)
    _check_seq_len(model_or_tokenizer, seq_len)
    tok = _tokenizer_of(model_or_tokenizer)
    bos, pad = _special_ids(tok)
    if prepend_bos and bos is None:
        raise MiMassiveError("prepend_bos is set but the tokenizer has neither a BOS nor an EOS token")
    tokens = encode(tok, text)
    seqs = chunk_tokens(tokens, seq_len=seq_len, n_samples=n_samples, seed=seed, prepend_bos=prepend_bos,
                        bos_token_id=bos, name=name)
    source = {**source, "sha256": hashlib.sha256(text.encode()).hexdigest(), "n_text_tokens": len(tokens)}
    return Corpus(name=name, sequences=seqs, prepend_bos=prepend_bos, seq_len=seq_len, n_samples=n_samples,
                  seed=seed, bos_token_id=bos, pad_token_id=pad, source=source, prepend_bos_source=bos_source)


def file_corpus(model_or_tokenizer: Any, path: str | Path, *, n_samples: int = 8, seq_len: int = 512,
                seed: int = 0, prepend_bos: bool | str | None = "auto", prepend_bos_source: str | None = None) -> Corpus:
    """Non-overlapping windows of a UTF-8 text file (with or without BOM), ``n_samples`` drawn with ``seed``."""
    text = read_text_file(path)
    return _chunked(model_or_tokenizer, text, name=Path(path).name, n_samples=n_samples, seq_len=seq_len,
                    seed=seed, prepend_bos=prepend_bos, prepend_bos_source=prepend_bos_source,
                    source={"kind": "file", "path": str(Path(path).resolve())})


def builtin_text() -> str:
    """Offline English prose that ships with Python: the prose paragraphs of ``pydoc_data.topics``.

    Indented lines (grammar and code samples) and heading underlines are dropped, so what is left is
    the reference manual's running text (~300k characters). Nothing third-party is committed.
    """
    from pydoc_data.topics import topics

    kept = []
    for key in sorted(topics):
        for line in topics[key].splitlines():
            stripped = line.strip()
            if not stripped or line[:1].isspace() or set(stripped) <= set("*=-^~"):
                continue
            kept.append(stripped)
    return " ".join(kept)


def builtin_corpus(model_or_tokenizer: Any, *, n_samples: int = 8, seq_len: int = 256, seed: int = 0,
                   prepend_bos: bool | str | None = "auto", prepend_bos_source: str | None = None) -> Corpus:
    """The built-in offline corpus (see :func:`builtin_text`)."""
    import sys

    return _chunked(model_or_tokenizer, builtin_text(), name=BUILTIN, n_samples=n_samples, seq_len=seq_len,
                    seed=seed, prepend_bos=prepend_bos, prepend_bos_source=prepend_bos_source,
                    source={"kind": "builtin", "module": "pydoc_data.topics", "python": sys.version.split()[0]})


def wikitext_dir() -> Path | None:
    """The local WikiText-2 folder: ``$MI_MASSIVE_WIKITEXT_DIR``, else ``../shared/data/wikitext-2`` from the
    current directory or from this checkout. None when not found."""
    candidates = []
    if os.environ.get(WIKITEXT_ENV):
        candidates.append(Path(os.environ[WIKITEXT_ENV]))
    candidates.append(Path.cwd().parent / "shared" / "data" / "wikitext-2")
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikitext-2")
    for folder in candidates:
        if (folder / "test.txt").is_file():
            return folder
    return None


def wikitext_text(split: str = "test") -> tuple[str, dict[str, Any]]:
    """WikiText-2 text of a split, from the local copy or (online) the ``datasets`` hub."""
    folder = wikitext_dir()
    if folder is not None and (folder / f"{split}.txt").is_file():
        path = folder / f"{split}.txt"
        return read_text_file(path), {"kind": "wikitext-2", "split": split, "path": str(path.resolve()),
                                      "release": "word-level tokenized (local copy)"}
    try:
        from datasets import load_dataset

        hub_split = {"valid": "validation"}.get(split, split)
        data = load_dataset("wikitext", "wikitext-2-raw-v1", split=hub_split)
    except Exception as err:
        raise MiMassiveError(
            f"WikiText-2 '{split}' not found locally (set {WIKITEXT_ENV}) and the datasets hub failed "
            f"({type(err).__name__}); pass a text file path instead"
        ) from err
    return "\n\n".join(data["text"]), {"kind": "wikitext-2", "split": split, "release": "wikitext-2-raw-v1 (hub)"}


def wikitext_corpus(model_or_tokenizer: Any, split: str = "test", *, n_samples: int = 8, seq_len: int = 512,
                    seed: int = 0, prepend_bos: bool | str | None = "auto", prepend_bos_source: str | None = None) -> Corpus:
    """Windows of WikiText-2 (``test`` by default)."""
    text, source = wikitext_text(split)
    return _chunked(model_or_tokenizer, text, name=f"wikitext-2:{split}", n_samples=n_samples, seq_len=seq_len,
                    seed=seed, prepend_bos=prepend_bos, prepend_bos_source=prepend_bos_source, source=source)


IMAGES = "images"


def load_corpus(model_or_tokenizer: Any, name_or_path: str, *, n_samples: int = 8, seq_len: int = 256,
                seed: int = 0, prepend_bos: bool | str | None = "auto", prepend_bos_source: str | None = None) -> Corpus:
    """Resolve a corpus name (``builtin``, ``wikitext-2[:split]``, ``images`` for a vision model) or a text-file path.

    ``images``: ``n_samples`` generated images (:func:`mi_massive.core.corpus.images.image_corpus`; ``seed``
    picks them, ``seq_len`` and BOS do not apply). A vision model takes only ``images``.
    """
    vision = bool(getattr(getattr(model_or_tokenizer, "cfg", None), "is_visual_model", False))
    if name_or_path == IMAGES or vision:
        if not vision:
            raise MiMassiveError("corpus 'images' is for vision models (toy-vit, toy-vit-reg, ViT/DINOv2/CLIP); "
                                 "this model reads text")
        if name_or_path != IMAGES:
            raise MiMassiveError(f"a vision model reads images, not '{name_or_path}': use --corpus images "
                                 "(generated images; no download)")
        from mi_massive.core.corpus.images import image_corpus

        return image_corpus(model_or_tokenizer, n_images=n_samples, seed=seed)
    kwargs = dict(n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos,
                  prepend_bos_source=prepend_bos_source)
    if name_or_path == BUILTIN:
        return builtin_corpus(model_or_tokenizer, **kwargs)
    if name_or_path in WIKITEXT_SPLITS:
        return wikitext_corpus(model_or_tokenizer, WIKITEXT_SPLITS[name_or_path], **kwargs)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise MiMassiveError(f"corpus path {path} is a directory; give a UTF-8 text file")
    if not path.exists():
        raise MiMassiveError(
            f"unknown corpus '{name_or_path}': not 'builtin', not 'wikitext-2[:test|valid|train]', and no such file"
        )
    return file_corpus(model_or_tokenizer, path, **kwargs)
