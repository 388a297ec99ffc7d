"""MLP internals at the first massive layer: checkpoint statistics and per-neuron contributions.

Also hosts the shared capture step of the mechanism pipelines (:func:`capture_layer`): one layer's
MLP hooks and block output over a corpus, flattened to real tokens, with each token's massive dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Bool, Float, Int

from mi_massive.analyses.mlp.neurons import checkpoint_stats, contribution_summary, neuron_contributions
from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD, detect
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.provenance import provenance
from mi_massive.analyses.mlp.record import Checkpoint, Contributions, MassiveToken, MlpResult, ReconstructionCheck
from mi_massive.core.names import act_name
from mi_massive.core.engine import iter_corpus
from mi_massive.core.loading.vit import refuse_vision


def is_gated(model) -> bool:
    """True for gated MLPs (Llama-style SiLU(gate) * up), where ``mlp.hook_pre_linear`` is the up projection."""
    return bool(getattr(model.cfg, "gated_mlp", False))


def mlp_input_norm(model, layer: int) -> str | None:
    """Which norm feeds block ``layer``'s MLP: ``"ln2"`` (pre-MLP norm), ``"ln1"`` (a parallel block whose one
    norm feeds attention and MLP alike: GPT-J, Falcon-7B) or None (no pre-MLP norm: OLMo-2 reads the residual)."""
    if act_name("ln2_normalized", layer) in model.hook_dict:
        return "ln2"
    if getattr(model.cfg, "parallel_attn_mlp", False) and act_name("ln1_normalized", layer) in model.hook_dict:
        return "ln1"
    return None


def mlp_output_hook(model, layer: int) -> tuple[str, str | None]:
    """(hook of block ``layer``'s own MLP output, note). Pre-norm blocks: ``hook_mlp_out``. Blocks with a
    post-MLP norm (Gemma-2/3, OLMo-2): ``ln2_post.hook_in``, the raw output that ``W_out`` reconstructs;
    ``hook_mlp_out`` is that output after the norm (per token a frozen RMS scale times the gain)."""
    raw = act_name("ln2_post_in", layer)
    if raw in model.hook_dict:
        arch = getattr(model.cfg, "architecture", None) or "this model"
        return raw, (f"{arch} normalises the MLP output before the residual (post-MLP norm ln2_post): W_out and the "
                     f"neuron contributions are in the MLP's own output units (ln2_post.hook_in); hook_mlp_out is "
                     f"that output times the norm's frozen per-token scale and gain")
    return act_name("mlp_out", layer), None


def checkpoint_hooks(model, layer: int) -> list[tuple[str, str]]:
    """(label, hook name) of each MLP checkpoint of block ``layer``, in data-flow order.

    The MLP input is the output of its norm: ``ln2`` in most blocks, the shared ``ln1`` of a parallel block
    with one norm (GPT-J, Falcon-7B), or the residual itself (``mlp.hook_in``) where there is no pre-MLP
    norm (OLMo-2). Blocks with a post-MLP norm get the raw MLP output (``ln2_post.hook_in``) before
    ``hook_mlp_out``.
    """
    gated = is_gated(model)
    norm = mlp_input_norm(model, layer)
    if norm == "ln2":
        out = [("MLP input, normalised (ln2.hook_normalized)", act_name("ln2_normalized", layer)),
               ("MLP input, after gain (ln2.hook_out)", act_name("ln2_out", layer))]
    elif norm == "ln1":
        out = [("MLP input, normalised (ln1.hook_normalized, shared with attention)", act_name("ln1_normalized", layer)),
               ("MLP input, after gain (ln1.hook_out, shared with attention)", act_name("ln1_out", layer))]
    else:
        out = [("MLP input, no pre-MLP norm (mlp.hook_in)", act_name("mlp_input", layer))]
    if gated:
        out += [("gate pre-activation (mlp.hook_pre)", act_name("pre", layer)),
                ("up projection (mlp.hook_pre_linear)", act_name("pre_linear", layer))]
    else:
        out += [("pre-activation (mlp.hook_pre)", act_name("pre", layer))]
    out += [("post-activation (mlp.hook_post)", act_name("post", layer))]
    raw, _ = mlp_output_hook(model, layer)
    if raw != act_name("mlp_out", layer):
        out += [("MLP output before the post-norm (ln2_post.hook_in)", raw)]
    out += [("MLP output (hook_mlp_out)", act_name("mlp_out", layer))]
    return out


def b_out(model, layer: int) -> Float[torch.Tensor, "d_model"]:
    """The MLP output bias of block ``layer`` (zeros for bias-free models such as Llama)."""
    try:
        return model.b_out[layer].detach().float()
    except AttributeError:
        return torch.zeros(model.cfg.d_model)


@dataclass
class LayerCapture:
    """One block's activations over a corpus, flattened to real tokens (pads dropped).

    ``acts[name]``: [tok, width]; ``seq``/``pos``/``token_id``: [tok] where each row came from;
    ``massive``: [tok, d_model] True where the block output entry is massive (per-sequence rule).
    """

    layer: int
    acts: dict[str, Float[torch.Tensor, "tok width"]]
    seq: Int[torch.Tensor, "tok"]
    pos: Int[torch.Tensor, "tok"]
    token_id: Int[torch.Tensor, "tok"]
    massive: Bool[torch.Tensor, "tok d_model"]


def capture_layer(model, corpus: Corpus, layer: int, names: Sequence[str], *, batch_size: int = 8,
                  abs_threshold: float = ABS_THRESHOLD, rel_threshold: float = REL_THRESHOLD) -> LayerCapture:
    """Capture ``names`` and ``blocks.{layer}.hook_resid_post`` over ``corpus``; flag massive entries."""
    resid = act_name("resid_post", layer)
    wanted = list(dict.fromkeys([*names, resid]))
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in wanted}
    seqs, poss, toks, flags = [], [], [], []
    for indices, ids, mask, _lg, acts in iter_corpus(model, corpus, wanted, batch_size=batch_size,
                                                     progress=f"capture block {layer}"):
        h = acts[resid]
        mas, _ = detect(h, mask, abs_threshold=abs_threshold, rel_threshold=rel_threshold)
        flag = torch.zeros_like(h, dtype=torch.bool)
        flag[mas.rows, mas.positions, mas.dims] = True
        for n in wanted:
            a = acts[n]
            if a.shape[:2] != mask.shape and a.shape[0] == mask.numel():  # OPT's ln2 sees [batch * pos, d]
                a = a.reshape(*mask.shape, *a.shape[1:])
            parts[n].append(a[mask])
        flags.append(flag[mask])
        seq_idx = torch.tensor(list(indices))[:, None].expand_as(mask)
        pos_idx = torch.arange(mask.shape[1])[None].expand_as(mask)
        seqs.append(seq_idx[mask])
        poss.append(pos_idx[mask])
        toks.append(ids[mask])
    return LayerCapture(layer=layer, acts={n: torch.cat(v) for n, v in parts.items()}, seq=torch.cat(seqs),
                        pos=torch.cat(poss), token_id=torch.cat(toks), massive=torch.cat(flags))


def resolve_layer(model, corpus: Corpus, layer: int | None, *, batch_size: int = 8,
                  abs_threshold: float = ABS_THRESHOLD, rel_threshold: float = REL_THRESHOLD) -> int:
    """``layer`` if given, else the first massive block of a scan of ``corpus`` (error when there is none)."""
    if layer is not None:
        if not 0 <= layer < model.cfg.n_layers:
            raise MiMassiveError(f"--layer {layer} out of range: the model has {model.cfg.n_layers} blocks")
        return layer
    from mi_massive.analyses.scan.run import scan

    res = scan(model, corpus, abs_threshold=abs_threshold, rel_threshold=rel_threshold, batch_size=batch_size,
               include_embed=False, progress=True)
    first = res.summary.get("first_layer")
    if first is None:
        raise MiMassiveError("no massive activation in this corpus; pass --layer (and --dim) explicitly")
    return int(first)


def resolve_dim(cap: LayerCapture, dim: int | None) -> int:
    """``dim`` if given, else the residual dim holding the largest |block output| at this layer."""
    h = cap.acts[act_name("resid_post", cap.layer)]
    if dim is not None:
        if not 0 <= dim < h.shape[1]:
            raise MiMassiveError(f"--dim {dim} out of range: d_model is {h.shape[1]}")
        return dim
    return int(h.abs().amax(0).argmax())


def massive_tokens(cap: LayerCapture, dim: int) -> Bool[torch.Tensor, "tok"]:
    """Tokens whose block output is massive in ``dim``; if none is, the token with the largest |h[dim]|
    (so the decomposition still runs; the result notes it)."""
    flag = cap.massive[:, dim]
    if flag.any():
        return flag
    h = cap.acts[act_name("resid_post", cap.layer)][:, dim]
    out = torch.zeros_like(flag)
    out[h.abs().argmax()] = True
    return out


def token_table(model, cap: LayerCapture, rows: Bool[torch.Tensor, "tok"], dim: int, limit: int = 20) -> list[dict]:
    """(sequence, position, token, h[dim]) of the flagged rows (first ``limit``)."""
    h = cap.acts[act_name("resid_post", cap.layer)][:, dim]
    idx = torch.nonzero(rows).flatten()[:limit].tolist()
    return [{"sequence": int(cap.seq[i]), "position": int(cap.pos[i]), "token": model.tokenizer.decode([int(cap.token_id[i])]),
             "value": float(h[i])} for i in idx]


def mlp_internals(model, corpus: Corpus, *, layer: int | None = None, dim: int | None = None, top_k: int = 20,
                  batch_size: int = 8, abs_threshold: float = ABS_THRESHOLD, rel_threshold: float = REL_THRESHOLD,
                  options: dict[str, Any] | None = None) -> MlpResult:
    """Checkpoint statistics and per-neuron contributions of block ``layer``'s MLP to residual ``dim``.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> r = mlp(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True))
    >>> r.layer, r.dim, round(r.check.massive_mlp_out_mean)
    (1, 5, 3000)
    >>> r.contributions.n_neurons_50, list(r.to_dataframe().columns[:3])
    (1, ['neuron', 'massive', 'w_out'])

    ``layer`` (0-based) defaults to the first massive block of the corpus, ``dim`` to the residual dim
    with the largest |block output| there. Contributions c[t, n] = hook_post[t, n] * W_out[n, dim] and
    the MLP output are in residual units; ``n_neurons_50`` counts the neurons carrying 50% of the
    massive token's MLP output (here one planted neuron writes all 3000). Where a post-MLP norm follows
    the MLP (Gemma-2/3, OLMo-2) the contributions and the reconstruction check are in the MLP's own output
    units (``ln2_post.hook_in``); ``massive_mlp_out_mean`` stays the normalised write into the residual
    (a note says so). The MLP input checkpoint follows the architecture (:func:`checkpoint_hooks`).
    """
    refuse_vision(model, "mlp", "it reads MLP internals (mlp.hook_pre/post, W_out)")
    L = resolve_layer(model, corpus, layer, batch_size=batch_size, abs_threshold=abs_threshold,
                      rel_threshold=rel_threshold)
    cps = checkpoint_hooks(model, L)
    cap = capture_layer(model, corpus, L, [n for _, n in cps], batch_size=batch_size, abs_threshold=abs_threshold,
                        rel_threshold=rel_threshold)
    d = resolve_dim(cap, dim)
    notes = []
    is_m = massive_tokens(cap, d)
    if not cap.massive[:, d].any():
        notes.append(f"dim {d} is not massive at block {L} in this corpus; 'massive token' = the token with the "
                     f"largest |h[{d}]|")
    checkpoints = [{"label": label, "hook": name, **checkpoint_stats(cap.acts[name], is_m)} for label, name in cps]
    raw_name, post_norm_note = mlp_output_hook(model, L)
    if post_norm_note:
        notes.append(post_norm_note)
    post, out, raw = cap.acts[act_name("post", L)], cap.acts[act_name("mlp_out", L)], cap.acts[raw_name]
    w_col = model.W_out[L, :, d].detach().float()
    bias = float(b_out(model, L)[d])
    contrib = neuron_contributions(post, w_col)
    extra = {"pre": cap.acts[act_name("pre", L)]}
    if is_gated(model):
        extra["up"] = cap.acts[act_name("pre_linear", L)]
    summary = contribution_summary(contrib, is_m, post, w_col, extra=extra, k=top_k)
    recon = contrib.sum(1) + bias
    err = (recon - raw[:, d]).abs()  # raw = hook_mlp_out unless a post-MLP norm follows the MLP
    check = {"b_out": bias, "max_abs_error": float(err.max()),
             "max_rel_error_massive": float((err[is_m] / raw[is_m, d].abs().clamp_min(1e-30)).max()),
             "massive_mlp_out_mean": float(out[is_m, d].mean()),
             "massive_resid_post_mean": float(cap.acts[act_name("resid_post", L)][is_m, d].mean())}
    share = check["massive_mlp_out_mean"] / check["massive_resid_post_mean"] if check["massive_resid_post_mean"] else None
    check["mlp_share_of_resid"] = share
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "top_k": top_k, **(options or {})}
    return MlpResult(provenance=provenance(model, corpus, options=opts), layer=L, dim=d, gated=is_gated(model),
                     massive_tokens=[MassiveToken.from_dict(t) for t in token_table(model, cap, is_m, d)],
                     checkpoints=[Checkpoint.from_dict(c) for c in checkpoints],
                     contributions=Contributions.from_dict(summary), check=ReconstructionCheck.from_dict(check),
                     notes=notes)


mlp = mlp_internals

