"""Exact additive attribution of one residual entry h_L[t, d] (pure functions of tensors).

In a pre-norm transformer the residual after block L is a plain sum of everything written into it:

    h_L[t, d] = embed[t, d] (+ pos_embed[t, d])
              + sum_{l <= L} ( sum_h z_l[t, h, :] . W_O[l, h, :, d]  +  b_O[l, d] )      (attention)
              + sum_{l <= L} mlp_out_l[t, d]                                            (MLP)

and the dominant MLP refines further into neurons: mlp_out_l[t, d] = sum_n post_l[t, n] W_out[l, n, d]
+ b_out[l, d]. Every term is in residual units and signed; no ablation is involved. The sum is
checked against the residual the model computed (relative error < ``tolerance``, default 1e-4),
which also checks the per-head decomposition (hook_z through W_O reproduces each attention output).

Parallel blocks (GPT-NeoX/Pythia, GPT-J, Falcon: x + attn(ln(x)) + mlp(ln'(x))) add the same terms.
Post-sublayer norms (Gemma-2/3, OLMo-2: x + norm(attn(..)) + ...) are linear once their RMS scale is
frozen at the value the forward used: the caller multiplies z, b_O (attention) and post, b_out, the
MLP output (MLP) by that frozen scale times the norm's gain at d before calling :func:`decompose`, so the
terms still add up exactly; biases (b_O, b_out) may then differ per sequence and are averaged too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from mi_massive.analyses.attribute.record import Contribution

TOLERANCE = 1e-4


class AttributionMismatch(AssertionError):
    """The contributions do not add up to the residual (a decomposition or hook bug)."""


@dataclass
class EntryTensors:
    """Everything the decomposition of one entry needs, already sliced at (sequence, position, dim).

    Shapes use ``layer`` = 0..L (the blocks up to and including the entry's layer).
    """

    residual: float
    embed: float
    pos_embed: float | None
    z: Float[torch.Tensor, "layer head d_head"]
    w_o: Float[torch.Tensor, "layer head d_head"]  # W_O[l, h, :, d]
    b_o: Float[torch.Tensor, "layer"]  # zeros on bias-free models
    mlp_out: Float[torch.Tensor, "layer"]
    post: Float[torch.Tensor, "layer d_mlp"]
    w_out: Float[torch.Tensor, "layer d_mlp"]  # W_out[l, :, d]
    b_out: Float[torch.Tensor, "layer"]


def head_contributions(z: Float[torch.Tensor, "layer head d_head"], w_o: Float[torch.Tensor, "layer head d_head"]
                       ) -> Float[torch.Tensor, "layer head"]:
    """z_l[t, h, :] . W_O[l, h, :, d] for every head: what each head writes into dim d."""
    return torch.einsum("lhk,lhk->lh", z.double(), w_o.double()).float()


def neuron_contributions(post: Float[torch.Tensor, "d_mlp"], w_out: Float[torch.Tensor, "d_mlp"]
                         ) -> Float[torch.Tensor, "d_mlp"]:
    """post[t, n] * W_out[n, d] for every neuron of one MLP."""
    return (post.double() * w_out.double()).float()


def decompose(t: EntryTensors, *, top_neurons: int = 50, tolerance: float = TOLERANCE
              ) -> tuple[list[Contribution], float, float, int]:
    """(contributions, total, relative error, dominant MLP layer) of one entry; raises if it does not add up.

    The relative error is |total - residual| / max(|residual|, largest |term|): an entry near 0 made of
    large cancelling terms is judged against the size of its terms.

    The additive terms are ``embed``, ``pos_embed``, one ``head`` per (layer, head), ``attn_bias``
    per layer with a bias, one ``mlp`` per layer. The dominant MLP (largest |mlp term|) is refined
    into its ``top_neurons`` largest neurons, ``neuron_rest`` (the other neurons) and ``mlp_bias``.
    """
    heads = head_contributions(t.z, t.w_o)
    terms = [Contribution("embed", "embedding", float(t.embed))]
    if t.pos_embed is not None:
        terms.append(Contribution("pos_embed", "position embedding", float(t.pos_embed)))
    n_layers = heads.shape[0]
    for layer in range(n_layers):
        for head in range(heads.shape[1]):
            terms.append(Contribution("head", f"L{layer}H{head}", float(heads[layer, head]), layer, head))
        if float(t.b_o[layer]) != 0.0:
            terms.append(Contribution("attn_bias", f"L{layer} b_O", float(t.b_o[layer]), layer))
        terms.append(Contribution("mlp", f"MLP{layer}", float(t.mlp_out[layer]), layer))
    total = float(sum(c.value for c in terms))  # python floats: float64 accumulation
    # relative to the residual, or to the largest term when the terms cancel to (nearly) nothing
    scale = max(abs(t.residual), max(abs(c.value) for c in terms), 1e-12)
    rel = abs(total - t.residual) / scale
    if rel >= tolerance:
        raise AttributionMismatch(f"contributions sum to {total:.6g} but the residual is {t.residual:.6g} "
                                  f"(relative error {rel:.2e} >= {tolerance:g})")
    dominant = int(t.mlp_out.abs().argmax())
    neurons = neuron_contributions(t.post[dominant], t.w_out[dominant])
    order = neurons.abs().argsort(descending=True)[:top_neurons]
    refine = [Contribution("neuron", f"MLP{dominant} n{int(n)}", float(neurons[n]), dominant, int(n)) for n in order]
    rest = float(neurons.double().sum() - neurons[order].double().sum())
    refine.append(Contribution("neuron_rest", f"MLP{dominant} other neurons", rest, dominant))
    if float(t.b_out[dominant]) != 0.0:
        refine.append(Contribution("mlp_bias", f"MLP{dominant} b_out", float(t.b_out[dominant]), dominant))
    return terms + refine, total, rel, dominant


def mean_tensors(items: list[EntryTensors]) -> EntryTensors:
    """The average of several entries' tensors. Every term is linear in them, so decomposing the
    average gives exactly the mean of each contribution over sequences."""
    def avg(get):
        return torch.stack([torch.as_tensor(get(t), dtype=torch.float64) for t in items]).mean(0)

    pos = None if items[0].pos_embed is None else float(avg(lambda t: t.pos_embed))
    return EntryTensors(
        residual=float(avg(lambda t: t.residual)), embed=float(avg(lambda t: t.embed)), pos_embed=pos,
        z=avg(lambda t: t.z).float(), w_o=items[0].w_o, b_o=avg(lambda t: t.b_o).float(),
        mlp_out=avg(lambda t: t.mlp_out).float(), post=avg(lambda t: t.post).float(), w_out=items[0].w_out,
        b_out=avg(lambda t: t.b_out).float(),
    )
