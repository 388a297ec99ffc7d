"""``attribute``: who writes a massive entry h_L[t, d]? Exact decomposition, no ablation.

Captures (through the runner) the embeddings, every head's hook_z, every MLP's hook_post and
hook_mlp_out up to block L and the residual itself, then calls the pure decomposition of
:mod:`mi_massive.analyses.attribute.decompose` per sequence (each checked to sum to its residual) and on the
mean over sequences (each reported contribution is the mean over sequences).
"""

from __future__ import annotations

from typing import Any

import torch

from mi_massive.analyses.attribute.decompose import AttributionMismatch, EntryTensors, decompose, mean_tensors
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks.ablation import check_layers
from mi_massive.analyses.scan.run import token_strings
from mi_massive.analyses.attribute.record import REFINING, AttributionResult, SequenceAttribution
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import iter_corpus
from mi_massive.core.names import EMBED_HOOK, act_name
from mi_massive.core.loading.vit import refuse_vision


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


POST_NORM_NOTE = ("post-sublayer norms linearised: each norm applied to a sublayer output is a diagonal linear map "
                  "once its RMS scale is frozen at the value the forward used, so every head, bias, MLP and neuron "
                  "term is multiplied by that frozen scale times the norm's gain at the dim (exact, not an "
                  "approximation of this forward)")


def _architecture(model) -> str:
    archs = getattr(getattr(model, "cfg", None), "architecture", None)
    if archs:
        return str(archs)
    original = getattr(model, "original_model", None)
    return type(original).__name__ if original is not None else type(model).__name__


def _post_norms(model, layer: int) -> list[str]:
    """Which post-sublayer norms (``ln1_post`` after attention, ``ln2_post`` after the MLP) the blocks have."""
    found = []
    for which in ("ln1_post", "ln2_post"):
        present = [act_name(f"{which}_in", l) in model.hook_dict for l in range(layer + 1)]
        if any(present):
            if not all(present):
                raise MiMassiveError(f"attribute: {_architecture(model)} has {which} in some blocks only; "
                                     f"cannot decompose it exactly")
            found.append(which)
    return found


def _norm_gain(model, layer: int, which: str) -> tuple[torch.Tensor, float]:
    """(gain vector g, eps) of block ``layer``'s post-norm, read by probing the module with a constant input.

    An RMS norm maps x to x / sqrt(mean(x^2) + eps) * g, so a vector of ones comes out as g / sqrt(1 + eps)."""
    norm = getattr(model.blocks[layer], which)
    module = getattr(norm, "original_component", norm)
    eps = getattr(module, "eps", getattr(module, "variance_epsilon", None))
    if eps is None or hasattr(module, "bias") and getattr(module, "bias", None) is not None:
        raise MiMassiveError(f"attribute: {_architecture(model)}'s {which} ({type(module).__name__}) is not an RMS "
                             f"norm; cannot linearise it exactly")
    weight = next(module.parameters())
    with torch.no_grad():
        probe = torch.ones(1, 1, model.cfg.d_model, device=weight.device, dtype=weight.dtype)
        gain = module(probe)[0, 0].double().cpu() * (1.0 + float(eps)) ** 0.5
    return gain, float(eps)


def _frozen_factor(x_in: torch.Tensor, x_out: torch.Tensor, gain: torch.Tensor, eps: float, dim: int,
                   what: str) -> float:
    """s * g[dim], the frozen post-norm factor at one position; checks the whole output is x_in * s * g."""
    x = x_in.double().cpu()
    scale = 1.0 / torch.sqrt(x.pow(2).mean() + eps)
    rebuilt = x * scale * gain
    err = float((rebuilt - x_out.double().cpu()).abs().max() / x_out.double().abs().max().clamp_min(1e-30))
    if err > 1e-4:
        raise MiMassiveError(f"attribute: the {what} norm is not a frozen RMS scale times a gain here "
                             f"(relative error {err:.1e}); cannot decompose exactly")
    return float(scale * gain[dim])


def _names(model, layer: int) -> tuple[list[str], bool, bool]:
    has_embed = "hook_embed" in model.hook_dict
    has_pos = "hook_pos_embed" in model.hook_dict and model.cfg.positional_embedding_type == "standard"
    names = [EMBED_HOOK, act_name("resid_post", layer)]
    names += ["hook_embed"] * has_embed + ["hook_pos_embed"] * has_pos
    for l in range(layer + 1):
        names += [act_name("z", l), act_name("mlp_out", l), act_name("post", l)]
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise MiMassiveError(f"attribute: {_architecture(model)} has no hook {missing[0]}; cannot decompose it exactly")
    for which in _post_norms(model, layer):
        names += [act_name(f"{which}_{side}", l) for l in range(layer + 1) for side in ("in", "out")]
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
    refuse_vision(model, "attribute", "the decomposition reads per-head outputs and MLP neurons")
    check_layers(model, [layer])
    if not 0 <= dim < model.cfg.d_model:
        raise MiMassiveError(f"dim {dim} out of range: d_model is {model.cfg.d_model}")
    if position < 0 or position >= min(corpus.lengths):
        raise MiMassiveError(f"position {position} is outside the shortest sequence ({min(corpus.lengths)} tokens)")
    names, has_embed, has_pos = _names(model, layer)
    arch = _architecture(model)
    post_norms = _post_norms(model, layer)
    gains = {(which, l): _norm_gain(model, l, which) for which in post_norms for l in range(layer + 1)}
    try:
        w = {k: v.cpu() for k, v in _weights(model, layer, dim).items()}
    except Exception as err:  # an adapter without W_O / W_out
        raise MiMassiveError(f"attribute: {arch} exposes no W_O/W_out ({type(err).__name__}); "
                             f"cannot decompose it exactly") from err
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
            ones = torch.ones(layer + 1, dtype=torch.float64)
            f_attn, f_mlp = ones.clone(), ones.clone()  # frozen post-norm factors (1 without post-norms)
            for which, factors in (("ln1_post", f_attn), ("ln2_post", f_mlp)):
                if which in post_norms:
                    for l in range(layer + 1):
                        gain, eps = gains[(which, l)]
                        factors[l] = _frozen_factor(at(act_name(f"{which}_in", l)), at(act_name(f"{which}_out", l)),
                                                    gain, eps, dim, f"{arch} block {l} {which}")
            if "ln2_post" in post_norms:  # the raw MLP output is the post-norm's input
                mlp_raw = torch.stack([at(act_name("ln2_post_in", l))[dim] for l in range(layer + 1)])
            else:
                mlp_raw = torch.stack([at(act_name("mlp_out", l))[dim] for l in range(layer + 1)])
            item = EntryTensors(
                residual=float(at(act_name("resid_post", layer))[dim]), embed=embed, pos_embed=pos_embed,
                z=(torch.stack([at(act_name("z", l)) for l in range(layer + 1)]).double().cpu()
                   * f_attn[:, None, None]).float(),
                w_o=w["w_o"], b_o=(w["b_o"].double().cpu() * f_attn).float(),
                mlp_out=(mlp_raw.double().cpu() * f_mlp).float(),
                post=(torch.stack([at(act_name("post", l)) for l in range(layer + 1)]).double().cpu()
                      * f_mlp[:, None]).float(),
                w_out=w["w_out"], b_out=(w["b_out"].double().cpu() * f_mlp).float(),
            )
            try:
                contribs, total, rel, dominant = decompose(item, top_neurons=5, tolerance=tolerance)
            except AttributionMismatch as err:
                raise MiMassiveError(f"attribute: {arch} cannot be decomposed exactly at block {layer} "
                                     f"(sequence {seq}): {err}") from err
            top = sorted((c for c in contribs if c.kind not in REFINING),
                         key=lambda c: -abs(c.value))[:5]
            per_sequence.append(SequenceAttribution(sequence=seq, residual=item.residual, total=total, rel_error=rel,
                                                    dominant_mlp=dominant, top=[[c.label, c.value] for c in top]))
            items.append(item)
    mean = mean_tensors(items)
    try:
        contribs, total, rel, dominant = decompose(mean, top_neurons=top_neurons, tolerance=tolerance)
    except AttributionMismatch as err:
        raise MiMassiveError(f"attribute: {arch} cannot be decomposed exactly at block {layer} "
                             f"(mean over sequences): {err}") from err
    str_tok = token_strings(model, [corpus.sequences[0]])[0][position]
    opts = {"layer": layer, "position": position, "dim": dim, "hook": act_name("resid_post", layer),
            "top_neurons": top_neurons, "tolerance": tolerance, **(options or {})}
    if post_norms:  # recorded only where it applies (pre-norm models' records are unchanged)
        opts["linearised_norms"] = post_norms
        opts["note"] = POST_NORM_NOTE
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
