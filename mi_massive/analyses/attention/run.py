"""Attention-sink data for one text: patterns, logits, value norms and the share of attention to sinks.

One forward pass through :func:`mi_massive.core.engine.run_capture` captures, for every block,
``attn.hook_pattern`` (probabilities [b, head, q, k]) and ``attn.hook_v`` ([b, pos, kv_head, d_head]),
and for the shown blocks ``attn.hook_attn_scores`` (scaled, masked, pre-softmax logits). The sink
positions are the positions the scan finds massive in this text (any block); when there are none,
position 0 is used and the label says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from jaxtyping import Float

from mi_massive.core.corpus import Corpus, text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.io import provenance, write_json
from mi_massive.core.engine import run_capture


@dataclass
class AttentionResult:
    """Attention views of one sequence (``text``, as given or decoded). Layers are 0-based block indices; positions index ``str_tokens``.

    ``patterns[L]``: probabilities [len(heads), q, k] of block L (selected heads).
    ``logits_mean[L]``: pre-softmax logits q.k/sqrt(d_head) averaged over the selected heads [q, k];
    entries with k > q (masked) are NaN.
    ``value_norms``: [n_layers, pos], the L2 norm of v_t (``attn.hook_v``) averaged over KV heads.
    ``sink_share``: [n_layers, n_heads], mean over queries q >= 1 of sum_{k in sink_positions} A[q, k]
    (a fraction in [0, 1]; all heads, not only the selected ones).
    ``massive_positions`` / ``massive_dims``: found by the scan of this text (empty if none).
    """

    provenance: dict[str, Any]
    model_name: str
    text: str
    tokens: list[int]
    str_tokens: list[str]
    layers: list[int]
    heads: list[int]
    all_layers: list[int]
    patterns: dict[int, torch.Tensor]
    logits_mean: dict[int, torch.Tensor]
    value_norms: torch.Tensor
    sink_share: torch.Tensor
    massive_positions: list[int]
    massive_dims: list[int]
    sink_positions: list[int]
    sink_label: str

    def describe(self) -> str:
        """One sentence: what the page shows and which positions count as sinks."""
        n = len(self.tokens)
        dims = ", ".join(map(str, self.massive_dims)) or "none"
        return (f"{n} tokens; blocks shown: {', '.join(map(str, self.layers))}; heads: "
                f"{', '.join(map(str, self.heads))}. Massive dims in this text: {dims}. "
                f"Sink positions for the attention share: {self.sink_label}.")

    def top_sink_heads(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` (block, head) pairs with the largest sink share."""
        flat = self.sink_share.flatten()
        idx = flat.topk(min(k, flat.numel())).indices.tolist()
        n_heads = self.sink_share.shape[1]
        return [{"layer": self.all_layers[i // n_heads], "head": i % n_heads, "share": float(flat[i])} for i in idx]

    def to_dict(self) -> dict[str, Any]:
        return {
            "provenance": self.provenance, "model_name": self.model_name, "text": self.text, "tokens": self.tokens,
            "str_tokens": self.str_tokens, "layers": self.layers, "heads": self.heads, "all_layers": self.all_layers,
            "massive_positions": self.massive_positions, "massive_dims": self.massive_dims,
            "sink_positions": self.sink_positions, "sink_label": self.sink_label,
            "sink_share": self.sink_share, "value_norms": self.value_norms,
            "top_sink_heads": self.top_sink_heads(),
            "logits_mean": {str(k): v for k, v in self.logits_mean.items()},
            "patterns": {str(k): v for k, v in self.patterns.items()},
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())


def _check_indices(kind: str, values: Sequence[int], size: int) -> list[int]:
    values = list(dict.fromkeys(values))
    if not values:
        raise MiMassiveError(f"empty {kind} list")
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise MiMassiveError(f"{kind} {bad[0]} out of range: the model has {size} {kind}s (valid: 0..{size - 1})")
    return values


def default_layers(n_layers: int, first_massive: int | None) -> list[int]:
    """Blocks to show when none are given: the first massive block, the next one and the last block."""
    if first_massive is None:
        picks = [0, n_layers // 2, n_layers - 1]
    else:
        picks = [first_massive, min(first_massive + 1, n_layers - 1), n_layers - 1]
    return sorted(set(picks))


def _as_corpus(model, text: str | Corpus, prepend_bos: bool, max_tokens: int | None) -> Corpus:
    corpus = text_corpus(model, text, prepend_bos=prepend_bos) if isinstance(text, str) else text.subset([0])
    if max_tokens is not None:
        if max_tokens < 2:
            raise MiMassiveError(f"max_tokens must be at least 2, got {max_tokens}")
        corpus.sequences = [corpus.sequences[0][:max_tokens]]
    if len(corpus.sequences[0]) < 2:
        raise MiMassiveError("the text must have at least 2 tokens (the sink share averages over queries q >= 1)")
    return corpus


def sink_share(pattern: Float[torch.Tensor, "head q k"], positions: Sequence[int]) -> Float[torch.Tensor, " head"]:
    """Mean over queries q >= 1 of the attention mass on ``positions`` (keys after q get 0 by causality)."""
    return pattern[:, 1:, list(positions)].sum(-1).mean(-1)


def masked_head_mean(scores: Float[torch.Tensor, "head q k"]) -> Float[torch.Tensor, "q k"]:
    """Mean over heads of pre-softmax logits; entries masked by causality (k > q) become NaN."""
    q, k = scores.shape[-2:]
    mean = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores)).mean(0)
    mean[torch.triu(torch.ones(q, k, dtype=torch.bool), diagonal=1)] = float("nan")
    return mean


def attention_analysis(
    model,
    text: str | Corpus,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    prepend_bos: bool = False,
    max_tokens: int | None = None,
    abs_threshold: float | None = None,
    rel_threshold: float | None = None,
) -> AttentionResult:
    """Everything the attention page shows, for one text (or the first sequence of a corpus).

    ``layers``: blocks shown with circuitsvis and the logits map (default :func:`default_layers`);
    ``heads``: heads shown there (default all). The sink share and value norms cover every block.
    ``max_tokens`` truncates the sequence (circuitsvis draws q x k cells per head).
    """
    from mi_massive.analyses.scan.run import scan, token_strings

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if layers is not None:
        layers = sorted(_check_indices("layer", layers, n_layers))
    heads = list(range(n_heads)) if heads is None else _check_indices("head", heads, n_heads)
    corpus = _as_corpus(model, text, prepend_bos, max_tokens)
    thresholds = {k: v for k, v in (("abs_threshold", abs_threshold), ("rel_threshold", rel_threshold)) if v is not None}
    scanned = scan(model, corpus, top_k=1, progress=False, **thresholds)
    blocks = [e for e in scanned.massive if e.layer >= 0]
    massive_positions = sorted({e.position for e in blocks})
    massive_dims = sorted({e.dim for e in blocks})
    if layers is None:
        layers = default_layers(n_layers, scanned.summary.get("first_layer"))
    sink_positions = massive_positions or [0]
    sink_label = (f"massive positions {', '.join(map(str, massive_positions))}" if massive_positions
                  else "position 0 (no massive activation detected in this text)")

    names = [f"blocks.{L}.attn.hook_pattern" for L in range(n_layers)]
    names += [f"blocks.{L}.attn.hook_v" for L in range(n_layers)]
    names += [f"blocks.{L}.attn.hook_attn_scores" for L in layers]
    ids = torch.tensor(corpus.sequences, dtype=torch.long)
    _, acts = run_capture(model, ids, names, check=False)

    share = torch.stack([sink_share(acts[f"blocks.{L}.attn.hook_pattern"][0], sink_positions) for L in range(n_layers)])
    norms = torch.stack([acts[f"blocks.{L}.attn.hook_v"][0].norm(dim=-1).mean(-1) for L in range(n_layers)])
    patterns = {L: acts[f"blocks.{L}.attn.hook_pattern"][0, heads] for L in layers}
    logits = {L: masked_head_mean(acts[f"blocks.{L}.attn.hook_attn_scores"][0, heads]) for L in layers}
    opts = {"layers": layers, "heads": heads, "max_tokens": max_tokens, "prepend_bos": corpus.prepend_bos,
            "hooks": "attn.hook_pattern, attn.hook_v, attn.hook_attn_scores", **thresholds}
    prov = provenance(model, corpus, options=opts)
    return AttentionResult(
        provenance=prov, model_name=prov["model"]["name"], tokens=corpus.sequences[0],
        text=text if isinstance(text, str) and max_tokens is None else model.tokenizer.decode(corpus.sequences[0]),
        str_tokens=token_strings(model, corpus.sequences)[0], layers=list(layers), heads=heads,
        all_layers=list(range(n_layers)), patterns=patterns, logits_mean=logits, value_norms=norms, sink_share=share,
        massive_positions=massive_positions, massive_dims=massive_dims, sink_positions=sink_positions,
        sink_label=sink_label,
    )


def write_attention(result: AttentionResult, out: str | Path) -> list[Path]:
    """Write ``out/attention.html`` (offline page) and ``out/attention.json``; both atomically."""
    from mi_massive.core.io import atomic_write_text, prepare_out_dir
    from mi_massive.analyses.attention.figures import attention_page

    out = prepare_out_dir(out)
    page = atomic_write_text(out / "attention.html", attention_page(result))
    return [page, result.save(out / "attention.json")]
