"""``attribute``: who writes a massive entry h_L[t, d]? Exact decomposition, no ablation.

Captures (through the runner) the embeddings, every head's hook_z, every MLP's hook_post and
hook_mlp_out up to block L and the residual itself, then calls the pure decomposition of
:mod:`mi_massive.analyses.attribute.decompose` per sequence (each checked to sum to its residual) and on the
mean over sequences (each reported contribution is the mean over sequences).
"""

from __future__ import annotations

from typing import Any

import torch

from mi_massive.analyses.attribute.decompose import EntryTensors, decompose, mean_tensors
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import check_layers
from mi_massive.analyses.scan.run import token_strings
from mi_massive.analyses.attribute.record import REFINING, AttributionResult, SequenceAttribution
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import iter_corpus
from mi_massive.core.names import EMBED_HOOK, act_name


def _weights(model, layer: int, dim: int) -> dict[str, torch.Tensor]:
    """W_O[:, :, :, d], b_O[:, d], W_out[:, :, d], b_out[:, d] for blocks 0..layer (biases 0 if absent)."""
    sl = slice(0, layer + 1)
    out = {"w_o": model.W_O[sl, :, :, dim].detach().float(), "w_out": model.W_out[sl, :, dim].detach().float()}
    for key, attr in (("b_o", "b_O"), ("b_out", "b_out")):
        try:
            out[key] = getattr(model, attr)[sl, dim].detach().float()
        except (AttributeError, TypeError):
            out[key] = torch.zeros(layer + 1)
    return out


def _names(model, layer: int) -> tuple[list[str], bool, bool]:
    has_embed = "hook_embed" in model.hook_dict
    has_pos = "hook_pos_embed" in model.hook_dict and model.cfg.positional_embedding_type == "standard"
    names = [EMBED_HOOK, act_name("resid_post", layer)]
    names += ["hook_embed"] * has_embed + ["hook_pos_embed"] * has_pos
    for l in range(layer + 1):
        names += [act_name("z", l), act_name("mlp_out", l), act_name("post", l)]
    return names, has_embed, has_pos


def attribute(model, corpus: Corpus, layer: int, position: int, dim: int, *, batch_size: int = 2,
              top_neurons: int = 50, tolerance: float = 1e-4, options: dict[str, Any] | None = None,
              progress: bool = False) -> AttributionResult:
    """Decompose h_layer[:, position, dim] (``blocks.{layer}.hook_resid_post``) over every sequence.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> res = mm.attribute(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), 1, 0, 5)
    >>> round(res.residual), res.rel_error < 1e-4, res.top(1)[0].label
    (3000, True, 'MLP1')

    Every term (embeddings, each head through W_O, attention biases, each MLP output; the dominant
    MLP refined into its ``top_neurons`` neurons) is signed, in residual units, the mean over
    sequences; the terms sum to the residual (``rel_error``). See
    :class:`~mi_massive.analyses.attribute.record.AttributionResult`.

    Raises :class:`~mi_massive.analyses.attribute.decompose.AttributionMismatch` if any sequence's terms do
    not sum to its residual within ``tolerance`` (relative).
    """
    check_layers(model, [layer])
    if not 0 <= dim < model.cfg.d_model:
        raise MiMassiveError(f"dim {dim} out of range: d_model is {model.cfg.d_model}")
    if position < 0 or position >= min(corpus.lengths):
        raise MiMassiveError(f"position {position} is outside the shortest sequence ({min(corpus.lengths)} tokens)")
    names, has_embed, has_pos = _names(model, layer)
    w = _weights(model, layer, dim)
    items: list[EntryTensors] = []
    per_sequence = []
    for idx, _ids, _mask, _logits, acts in iter_corpus(model, corpus, names, batch_size=batch_size,
                                                        progress="attribute" if progress else False):
        for row, seq in enumerate(idx):
            def at(name, row=row):
                return acts[name][row, position]
            resid_pre = float(at(EMBED_HOOK)[dim])
            pos_embed = float(at("hook_pos_embed")[dim]) if has_pos else None
            embed = float(at("hook_embed")[dim]) if has_embed else resid_pre - (pos_embed or 0.0)
            item = EntryTensors(
                residual=float(at(act_name("resid_post", layer))[dim]), embed=embed, pos_embed=pos_embed,
                z=torch.stack([at(act_name("z", l)) for l in range(layer + 1)]), w_o=w["w_o"], b_o=w["b_o"],
                mlp_out=torch.stack([at(act_name("mlp_out", l))[dim] for l in range(layer + 1)]),
                post=torch.stack([at(act_name("post", l)) for l in range(layer + 1)]),
                w_out=w["w_out"], b_out=w["b_out"],
            )
            contribs, total, rel, dominant = decompose(item, top_neurons=5, tolerance=tolerance)
            top = sorted((c for c in contribs if c.kind not in REFINING),
                         key=lambda c: -abs(c.value))[:5]
            per_sequence.append(SequenceAttribution(sequence=seq, residual=item.residual, total=total, rel_error=rel,
                                                    dominant_mlp=dominant, top=[[c.label, c.value] for c in top]))
            items.append(item)
    mean = mean_tensors(items)
    contribs, total, rel, dominant = decompose(mean, top_neurons=top_neurons, tolerance=tolerance)
    str_tok = token_strings(model, [corpus.sequences[0]])[0][position]
    opts = {"layer": layer, "position": position, "dim": dim, "hook": act_name("resid_post", layer),
            "top_neurons": top_neurons, "tolerance": tolerance, **(options or {})}
    return AttributionResult(
        provenance=provenance(model, corpus, options=opts), layer=layer, position=position, dim=dim,
        sequence=-1 if len(items) > 1 else 0, token=str_tok, residual=mean.residual, total=total,
        rel_error=max([rel] + [p.rel_error for p in per_sequence]), dominant_mlp=dominant,
        contributions=contribs, per_sequence=per_sequence,
    )


def strongest_entry(scan_result) -> tuple[int, int, int]:
    """(layer, position, dim) of the largest |value| massive entry at the first massive block."""
    first = scan_result.summary.first_layer
    entries = [e for e in scan_result.massive if e.layer == first]
    if first is None or not entries:
        raise MiMassiveError("the scan found no massive activation to attribute")
    top = max(entries, key=lambda e: abs(e.value))
    return top.layer, top.position, top.dim
