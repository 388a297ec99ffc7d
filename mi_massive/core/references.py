"""Reference activations for mean and resample ablation (these run forward passes; hook factories do not).

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> corpus = mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True)
>>> means = reference_means(model, corpus, ["blocks.1.hook_resid_post"])
>>> round(float(means["blocks.1.hook_resid_post"][0, 5]))
3000

:func:`reference_means` gives, per hook, the mean activation over a reference corpus for the two
position classes (row 0: position 0; row 1: positions >= 1), in the hook's own units (the residual
stream above, so the planted BOS entry reads 3000). :func:`resample_donors` gives each sequence the
activations of another sequence (:func:`~mi_massive.core.hooks.ablation.derangement`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float

from mi_massive.core.devices import accumulation_dtype
from mi_massive.core.engine import iter_corpus
from mi_massive.core.hooks.ablation import derangement
from mi_massive.core.names import POSITION_CLASSES


@torch.no_grad()
def reference_means(model, corpus, names: Sequence[str], *, batch_size: int = 8,
                    progress: bool = False) -> dict[str, Float[torch.Tensor, "cls ..."]]:
    """Mean activation at each hook over a reference corpus, per position class.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> corpus = mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True)
    >>> tuple(reference_means(model, corpus, ["blocks.0.attn.hook_z"])["blocks.0.attn.hook_z"].shape[:1])
    (2,)

    Returns ``{name: tensor [2, *feature_shape]}``: row 0 is the mean at position 0, row 1 the mean
    over all real positions >= 1 (pads excluded), pooled over sequences. Units: the hook's own
    (e.g. hook_z values in d_head space). Sequences of length 1 contribute to row 0 only. Each mean
    is on its hook's device (summed there in float64, float32 on MPS), in float32.
    """
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(len(POSITION_CLASSES), dtype=torch.float64)
    for _idx, _ids, mask, _logits, acts in iter_corpus(model, corpus, list(names), batch_size=batch_size,
                                                        progress="reference means" if progress else False):
        first = torch.zeros_like(mask)
        first[:, 0] = True
        classes = (first & mask, ~first & mask)
        counts += torch.tensor([float(c.sum()) for c in classes], dtype=torch.float64)
        for name, x in acts.items():  # summed where x lives (float64; float32 on MPS)
            x = x.to(accumulation_dtype(x.device))
            s = torch.stack([x[c.to(x.device)].sum(0) for c in classes])
            sums[name] = sums.get(name, 0) + s
    if counts[1] == 0:
        counts[1] = 1.0  # no position >= 1 anywhere: the rest-class mean is 0 and unused
    # the class counts broadcast over each hook's own feature shape (hook_z [2, heads, d_head], hook_mlp_out [2, d])
    return {n: (s / counts.to(device=s.device, dtype=s.dtype).view((-1,) + (1,) * (s.ndim - 1))).float()
            for n, s in sums.items()}


@torch.no_grad()
def resample_donors(model, corpus, names: Sequence[str], *, seed: int = 0, batch_size: int = 8
                    ) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Donor activations for resample ablation: sequence i gets sequence ``donor[i]``'s values.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama")
    >>> corpus = mm.text_corpus(model, ["The cat sat.", "The dog ran."], prepend_bos=True)
    >>> donor, acts = resample_donors(model, corpus, ["blocks.0.hook_resid_post"])
    >>> donor, acts["blocks.0.hook_resid_post"].shape[0]
    ([1, 0], 2)

    Returns (donor indices, ``{name: [n_sequences, max_len, ...]}``) -- right-padded like
    :meth:`Corpus.batches`; slice rows to match a batch (``acts[indices.start:indices.stop]``).
    """
    donor_idx = derangement(len(corpus), seed=seed, lengths=corpus.lengths)
    donor_corpus = corpus.subset(donor_idx)
    width = max(corpus.lengths)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for _i, _ids, _mask, _logits, acts in iter_corpus(model, donor_corpus, list(names), batch_size=batch_size,
                                                       progress=False):
        for n in names:
            x = acts[n]
            pad = torch.zeros((x.shape[0], width - x.shape[1], *x.shape[2:]), dtype=x.dtype, device=x.device)
            out[n].append(torch.cat([x, pad], 1))
    return donor_idx, {n: torch.cat(v) for n, v in out.items()}
