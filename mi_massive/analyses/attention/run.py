"""Attention-sink data for one text: patterns, logits, value norms and the share of attention to sinks.

One forward pass through :func:`mi_massive.core.engine.run_capture` captures, for every block,
``attn.hook_pattern`` (probabilities [b, head, q, k]) and ``attn.hook_v`` ([b, pos, kv_head, d_head]),
and for the shown blocks ``attn.hook_attn_scores`` (scaled, masked, pre-softmax logits). The sink
positions are the positions the scan finds massive in this text (any block); when there are none,
position 0 is used and the label says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Float

from mi_massive.core.corpus import Corpus, text_corpus
from mi_massive.errors import MiMassiveError
from mi_massive.analyses.attention.record import AttentionResult
from mi_massive.core.engine import run_capture
from mi_massive.core.provenance import provenance
from mi_massive.core.names import act_name
from mi_massive.core.loading.vit import refuse_vision


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


def _as_corpus(model, text: str | Corpus, prepend_bos: bool | str | None, max_tokens: int | None,
               prepend_bos_source: str | None = None) -> Corpus:
    corpus = (text_corpus(model, text, prepend_bos=prepend_bos, prepend_bos_source=prepend_bos_source)
              if isinstance(text, str) else text.subset([0]))
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


def attention(
    model,
    text: str | Corpus,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    prepend_bos: bool | str | None = "auto",
    max_tokens: int | None = None,
    abs_threshold: float | None = None,
    rel_threshold: float | None = None,
    prepend_bos_source: str | None = None,
) -> AttentionResult:
    """Everything the attention page shows, for one text (or the first sequence of a corpus).

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> res = mm.attention(model, "The cat sat on the mat.", prepend_bos=True, layers=[1, 2], heads=[0, 1])
    >>> res.massive_positions, res.massive_dims, res.sink_label
    ([0], [5], 'massive positions 0')
    >>> tuple(res.patterns[1].shape), tuple(res.sink_share.shape), res.top_sink_heads(1)[0]["layer"] in (0, 1, 2)
    ((2, 24, 24), (3, 4), True)

    Returns an :class:`~mi_massive.analyses.attention.record.AttentionResult`: attention
    probabilities and head-mean pre-softmax logits of the shown blocks, value-vector norms of every
    block and position, and per (block, head) the share of attention (0..1) paid to the sinks.

    ``layers``: blocks shown with circuitsvis and the logits map (default :func:`default_layers`);
    ``heads``: heads shown there (default all). The sink share and value norms cover every block.
    ``max_tokens`` truncates the sequence (circuitsvis draws q x k cells per head).
    """
    from mi_massive.analyses.scan.run import scan, token_strings

    refuse_vision(model, "attention", "it draws one text's attention (use heads for images)")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if layers is not None:
        layers = sorted(_check_indices("layer", layers, n_layers))
    heads = list(range(n_heads)) if heads is None else _check_indices("head", heads, n_heads)
    corpus = _as_corpus(model, text, prepend_bos, max_tokens, prepend_bos_source)
    thresholds = {k: v for k, v in (("abs_threshold", abs_threshold), ("rel_threshold", rel_threshold)) if v is not None}
    scanned = scan(model, corpus, top_k=1, progress=False, **thresholds)
    blocks = [e for e in scanned.massive if e.layer >= 0]
    massive_positions = sorted({e.position for e in blocks})
    massive_dims = sorted({e.dim for e in blocks})
    if layers is None:
        layers = default_layers(n_layers, scanned.summary.first_layer)
    sink_positions = massive_positions or [0]
    sink_label = (f"massive positions {', '.join(map(str, massive_positions))}" if massive_positions
                  else "position 0 (no massive activation detected in this text)")

    names = [act_name("pattern", L) for L in range(n_layers)]
    names += [act_name("v", L) for L in range(n_layers)]
    names += [act_name("attn_scores", L) for L in layers]
    ids = torch.tensor(corpus.sequences, dtype=torch.long)
    _, acts = run_capture(model, ids, names, check=False)

    share = torch.stack([sink_share(acts[act_name("pattern", L)][0], sink_positions) for L in range(n_layers)])
    norms = torch.stack([acts[act_name("v", L)][0].norm(dim=-1).mean(-1) for L in range(n_layers)])
    patterns = {L: acts[act_name("pattern", L)][0, heads] for L in layers}
    logits = {L: masked_head_mean(acts[act_name("attn_scores", L)][0, heads]) for L in layers}
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


attention_analysis = attention  # the name before the layout change


def write_attention(result: AttentionResult, out: str | Path) -> list[Path]:
    """Write ``out/attention.html`` (offline page) and ``out/attention.json``; both atomically."""
    from mi_massive.core.io import atomic_write_text, prepare_out_dir
    from mi_massive.analyses.attention.figures import attention_page

    out = prepare_out_dir(out)
    page = atomic_write_text(out / "attention.html", attention_page(result))
    return [page, result.save(out / "attention.json")]
