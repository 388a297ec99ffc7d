"""Attention edits: stop queries from attending to chosen key positions (tests the sink role).

The edit acts on ``blocks.L.attn.hook_pattern`` [batch, n_heads, query, key] (softmax probabilities).
For each edited query row the probabilities of the blocked keys are set to 0 and the row is
renormalised to sum to 1, i.e. the head spreads the mass it gave to the sink over the other keys
in proportion to their original weights (equivalent to setting those scores to -inf before the
softmax). A row whose whole mass sat on blocked keys (e.g. query 0 when key 0 is blocked, which
can attend only to itself) has nothing to renormalise and is left unchanged; by default only
queries q >= ``min_query`` = 1 are edited.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from jaxtyping import Float

from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import check_heads, check_layers
from mi_massive.core.hooks.types import Hook
from mi_massive.core.names import act_name


def renormalised_block(pattern: Float[torch.Tensor, "batch head q k"], keys: Sequence[int],
                       heads: Sequence[int] | None = None, *, min_query: int = 1
                       ) -> Float[torch.Tensor, "batch head q k"]:
    """``pattern`` with ``keys`` removed for queries >= ``min_query`` of ``heads`` (None: all), renormalised."""
    out = pattern.clone()
    h = slice(None) if heads is None else list(heads)
    sub = out[:, h, min_query:]
    sub[..., list(keys)] = 0.0
    total = sub.sum(-1, keepdim=True)
    ok = total > 0
    sub = torch.where(ok, sub / total.clamp_min(torch.finfo(sub.dtype).tiny), pattern[:, h, min_query:])
    out[:, h, min_query:] = sub
    return out


def block_keys(model, key_positions: Iterable[int], *, layers: Iterable[int] | None = None,
               heads: Iterable[tuple[int, int]] | None = None, min_query: int = 1) -> list[Hook]:
    """Hooks that stop queries (q >= ``min_query``) attending to ``key_positions``, renormalising.

    Give ``layers`` (all heads of those layers; None with ``heads`` None = every layer) or ``heads``
    as (layer, head) pairs. Head indices are query heads (GQA-safe: the pattern is per query head).
    """
    keys = sorted(set(int(k) for k in key_positions))
    if not keys:
        raise MiMassiveError("empty key set: give at least one key position to block")
    if any(k < 0 for k in keys):
        raise MiMassiveError("key positions must be non-negative")
    if min_query < 1:
        raise MiMassiveError("min_query must be at least 1 (query 0 can attend only to itself)")
    if heads is not None:
        grouped: dict[int, list[int] | None] = dict(check_heads(model, heads))
    else:
        chosen = range(model.cfg.n_layers) if layers is None else layers
        grouped = {layer: None for layer in check_layers(model, chosen)}
    hooks: list[Hook] = []
    for layer, hs in grouped.items():
        def hook_fn(pattern, hook=None, hs=hs):
            valid = [k for k in keys if k < pattern.shape[-1]]
            return renormalised_block(pattern, valid, hs, min_query=min_query) if valid else pattern
        hooks.append((act_name("pattern", layer), hook_fn))
    return hooks
