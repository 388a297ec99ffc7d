"""Training data: a flat token stream, cut into BOS-prefixed windows chosen deterministically per step.

Every window is ``[BOS] + seq_len - 1`` consecutive text tokens. The windows of optimiser step ``s`` are
drawn with a generator seeded from ``(seed, s)``, so a resumed run sees exactly the batches an
uninterrupted run would have seen, without storing any RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from mi_massive.errors import MiMassiveError


@dataclass
class TokenStream:
    """Token ids of one text (no special tokens) plus the BOS id to put in front of every window."""

    tokens: Int[torch.Tensor, "n"]
    bos_token_id: int
    source: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.tokens.numel())

    def _check(self, seq_len: int) -> int:
        body = seq_len - 1
        if seq_len < 3:
            raise MiMassiveError(f"seq_len must be at least 3, got {seq_len}")
        if len(self) <= body:
            raise MiMassiveError(f"the text has {len(self)} tokens, too few for windows of {seq_len}")
        return body

    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> Int[torch.Tensor, "batch seq_len"]:
        """The training windows of step ``step`` (random offsets from a (seed, step)-seeded generator)."""
        body = self._check(seq_len)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(self) - body, (batch_size,), generator=gen)
        rows = torch.stack([self.tokens[s:s + body] for s in starts.tolist()])
        return torch.cat([torch.full((batch_size, 1), self.bos_token_id, dtype=rows.dtype), rows], dim=1)

    def windows(self, n: int, seq_len: int) -> Int[torch.Tensor, "n seq_len"]:
        """``n`` evenly spaced, non-overlapping windows (for evaluation; deterministic)."""
        body = self._check(seq_len)
        n_fit = len(self) // body
        if n_fit < n:
            raise MiMassiveError(f"the evaluation text holds only {n_fit} windows of {seq_len} tokens, fewer than {n}")
        stride = n_fit // n
        rows = torch.stack([self.tokens[i * stride * body:(i * stride + 1) * body] for i in range(n)])
        return torch.cat([torch.full((n, 1), self.bos_token_id, dtype=rows.dtype), rows], dim=1)


def _encode(tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def _bos(tokenizer) -> int:
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise MiMassiveError("the tokenizer has neither a BOS nor an EOS token")
    return int(bos)


def load_streams(tokenizer, source: str, *, max_chars: int | None = None) -> tuple[TokenStream, TokenStream]:
    """(train, eval) streams of ``source``: ``wikitext-2`` or a text file (first 90% / last 10% of the characters).

    WikiText-2 trains on the ``train`` split when present; the local copy in ``../shared/data`` holds only
    ``test`` and ``valid``, so there it trains on ``test`` and evaluates on ``valid`` (recorded in ``source``).

    ``max_chars`` caps the text read (tokenising all of WikiText-2 train with a byte-level tokenizer is fast,
    but a cap keeps quick runs quick).
    """
    from mi_massive.core.corpus import read_text_file, wikitext_dir, wikitext_text

    if source in ("wikitext-2", "wikitext-2:train"):
        folder = wikitext_dir()
        has_train = folder is None or (folder / "train.txt").is_file()  # no local copy: the hub has all splits
        train_text, train_src = wikitext_text("train" if has_train else "test")
        eval_text, eval_src = wikitext_text("valid")
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise MiMassiveError(f"training text '{source}': not 'wikitext-2' and no such file")
        text = read_text_file(path)
        cut = int(len(text) * 0.9)
        train_text, eval_text = text[:cut], text[cut:]
        train_src = eval_src = {"kind": "file", "path": str(path.resolve())}
    if max_chars is not None:
        train_text, eval_text = train_text[:max_chars], eval_text[:max(max_chars // 10, 1)]
    bos = _bos(tokenizer)
    return (TokenStream(_encode(tokenizer, train_text), bos, {**train_src, "part": "train", "chars": len(train_text)}),
            TokenStream(_encode(tokenizer, eval_text), bos, {**eval_src, "part": "eval", "chars": len(eval_text)}))
