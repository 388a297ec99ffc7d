"""Token corpora: deterministic lists of token sequences with the options that made them.

A :class:`Corpus` holds token ids (BOS already prepended when ``prepend_bos``) and everything needed to
reproduce them. Sequences may differ in length; :meth:`Corpus.batches` right-pads them and returns
the lengths so that pad positions can be kept out of every statistic (with right padding a causal
model's real tokens never see the pads, so no attention mask is needed for correctness).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from jaxtyping import Bool, Int

from mi_massive.errors import MiMassiveError


@dataclass
class Corpus:
    """Token sequences plus provenance.

    ``sequences[i]`` is a list of token ids, including the BOS id at index 0 when ``prepend_bos``.
    ``source`` describes where the text came from (kind, path, SHA-256 of the text, ...).
    ``prepend_bos_source``: ``"auto"`` (what the model's tokenizer does, see :mod:`mi_massive.core.bos`) or
    ``"user"`` (``prepend_bos=True/False`` given explicitly).
    """

    name: str
    sequences: list[list[int]]
    prepend_bos: bool
    seq_len: int | None
    n_samples: int
    seed: int
    bos_token_id: int | None
    pad_token_id: int
    source: dict[str, Any] = field(default_factory=dict)
    prepend_bos_source: str = "user"

    def __post_init__(self) -> None:
        if not self.sequences or any(len(s) == 0 for s in self.sequences):
            raise MiMassiveError(f"corpus '{self.name}' has no tokens")

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]

    def describe(self) -> dict[str, Any]:
        """Everything but the token ids: goes into result provenance."""
        out = asdict(self)
        out.pop("sequences")
        out["n_sequences"] = len(self.sequences)
        out["n_tokens"] = sum(self.lengths)
        return out

    def subset(self, indices: list[int]) -> "Corpus":
        """The same corpus restricted to ``indices`` (in that order)."""
        sub = Corpus(**{**asdict(self), "sequences": [self.sequences[i] for i in indices]})
        sub.n_samples = len(indices)
        return sub

    def auto_batch_size(self, tokens_per_batch: int = 2048) -> int:
        """Sequences per forward pass so that a batch holds about ``tokens_per_batch`` tokens.

        Peak memory of a forward pass grows with batch x length (and batch x length^2 for the
        attention scores), so long sequences get smaller batches: 8 x 256, 4 x 512, 1 x 2048. This is
        the CPU rule; :func:`mi_massive.core.devices.auto_batch_size` raises it on a GPU with free memory.
        """
        return max(1, min(32, tokens_per_batch // max(self.lengths)))

    def batches(self, batch_size: int) -> Iterator[tuple[range, Int[torch.Tensor, "batch pos"], Bool[torch.Tensor, "batch pos"]]]:
        """Yield (sequence indices, right-padded ids [batch, pos], real-token mask [batch, pos])."""
        if batch_size < 1:
            raise MiMassiveError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, len(self.sequences), batch_size):
            indices = range(start, min(start + batch_size, len(self.sequences)))
            yield (indices, *self.batch(indices))

    def batch(self, indices: range) -> tuple[Int[torch.Tensor, "batch pos"], Bool[torch.Tensor, "batch pos"]]:
        """(right-padded ids [batch, pos], real-token mask [batch, pos]) of the sequences ``indices`` (CPU)."""
        rows = [self.sequences[i] for i in indices]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = True
        return ids, mask


def chunk_tokens(tokens: list[int], *, seq_len: int, n_samples: int, seed: int, prepend_bos: bool,
                 bos_token_id: int | None, name: str) -> list[list[int]]:
    """Cut a token stream into non-overlapping windows and pick ``n_samples`` of them reproducibly.

    Each window holds ``seq_len`` tokens in total: with ``prepend_bos`` it is BOS + ``seq_len - 1``
    text tokens (so the model sees exactly ``seq_len`` positions). The windows are chosen with
    ``random.Random(seed)`` and returned in the order drawn.
    """
    if seq_len < 2:
        raise MiMassiveError(f"seq_len must be at least 2, got {seq_len}")
    if n_samples < 1:
        raise MiMassiveError(f"n_samples must be positive, got {n_samples}")
    body = seq_len - 1 if prepend_bos else seq_len
    n_windows = len(tokens) // body
    if n_windows < n_samples:
        raise MiMassiveError(
            f"corpus '{name}' has {len(tokens)} tokens: only {n_windows} windows of {seq_len} tokens, "
            f"fewer than n_samples={n_samples}; lower --n-samples or --seq-len"
        )
    picks = random.Random(seed).sample(range(n_windows), n_samples)
    prefix = [bos_token_id] if prepend_bos else []
    return [prefix + tokens[w * body:(w + 1) * body] for w in picks]
