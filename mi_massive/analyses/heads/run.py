"""``heads``: attention sink scores of every head, with 95% CIs over sequences.

Attention patterns (``blocks.L.attn.hook_pattern``) are captured through the runner in groups of
layers small enough for ``budget_mb`` and reduced to per-sequence scores at once, so no full cache
is ever held. Massive positions come from a scan of the same corpus (run here unless given).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mi_massive.analyses.heads.scores import sink_scores, summarize_scores
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.analyses.heads.record import HeadScore, HeadScores
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import run_capture
from mi_massive.core.names import act_name


def massive_positions_from_scan(scan_result, n_sequences: int) -> list[list[int]]:
    """Per sequence, the sorted positions holding a massive entry in any block (from a ScanResult)."""
    sets: list[set[int]] = [set() for _ in range(n_sequences)]
    for e in scan_result.massive:
        if e.layer >= 0:
            sets[e.sequence].add(e.position)
    return [sorted(s) for s in sets]


def heads(model, corpus: Corpus, *, massive_positions: Sequence[Sequence[int]] | None = None,
                scan_result=None, min_query: int = 1, batch_size: int = 4, budget_mb: float = 512.0,
                progress: bool = True, options: dict[str, Any] | None = None) -> HeadScores:
    """Sink scores to position 0 and to the massive positions for every (layer, head).

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> scores = mm.heads(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)
    >>> scores.massive_positions, len(scores.heads), scores.heads[0].layer, scores.heads[0].head
    ([[0]], 12, 0, 0)
    >>> 0.0 <= scores.heads[0].to_first <= 1.0, list(scores.to_dataframe().columns)[:4]
    (True, ['layer', 'head', 'to_first', 'to_first_ci95'])

    Each :class:`~mi_massive.analyses.heads.record.HeadScore` holds probabilities (0..1): the mean
    over sequences of the mean over queries q >= ``min_query`` of the attention on position 0
    (``to_first``) and on the sequence's massive positions (``to_massive``), with 95% t-intervals.

    ``massive_positions[i]``: the key set of sequence i; if None it comes from ``scan_result`` or,
    failing that, from a fresh :func:`mi_massive.analyses.scan.run.scan` of ``corpus``.
    """
    if min_query < 1:
        raise MiMassiveError("min_query must be at least 1")
    if max(corpus.lengths) <= min_query:
        raise MiMassiveError(f"sequences need more than {min_query} tokens to have queries q >= {min_query}")
    if massive_positions is None:
        if scan_result is None:
            from mi_massive.analyses.scan.run import scan

            scan_result = scan(model, corpus, batch_size=batch_size, progress=progress)
        massive_positions = massive_positions_from_scan(scan_result, len(corpus))
    if len(massive_positions) != len(corpus):
        raise MiMassiveError("massive_positions needs one entry per sequence")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    first = torch.full((n_layers, n_heads, len(corpus)), float("nan"))
    massive = first.clone()
    for idx, ids, mask in corpus.batches(batch_size):
        width = ids.shape[1]
        per_layer_mb = len(idx) * n_heads * width * width * 4 / 2**20
        group = max(1, int(budget_mb // max(per_layer_mb, 1e-9)))
        for start in range(0, n_layers, group):
            layers = list(range(start, min(n_layers, start + group)))
            _, acts = run_capture(model, ids, [act_name("pattern", l) for l in layers], mask=mask)
            for l in layers:
                p = acts[act_name("pattern", l)]
                first[l, :, idx.start:idx.stop] = sink_scores(p, mask, [[0]] * len(idx), min_query=min_query).T
                sets = [massive_positions[i] for i in idx]
                massive[l, :, idx.start:idx.stop] = sink_scores(p, mask, sets, min_query=min_query).T
    rows = []
    for l in range(n_layers):
        for h in range(n_heads):
            m1, ci1, _ = summarize_scores(first[l, h])
            m2, ci2, n2 = summarize_scores(massive[l, h])
            rows.append(HeadScore(layer=l, head=h, to_first=m1, to_first_ci95=ci1, to_massive=m2,
                                   to_massive_ci95=ci2, n_massive=n2))

    def nested(t):
        return [[[None if v != v else v for v in row] for row in layer] for layer in t.tolist()]

    opts = {"min_query": min_query, "hook": "blocks.L.attn.hook_pattern", **(options or {})}
    return HeadScores(provenance=provenance(model, corpus, options=opts), n_layers=n_layers, n_heads=n_heads,
                      min_query=min_query, massive_positions=[list(s) for s in massive_positions], heads=rows,
                      per_sequence_first=nested(first), per_sequence_massive=nested(massive))


head_scores = heads  # the name before the layout change


def vision_heads(model, corpus: Corpus, *, scan_result=None, min_query: int = 1, batch_size: int = 4,
                 progress: bool = False, groups: Sequence[str] = ("cls", "registers", "massive_patches"),
                 options: dict[str, Any] | None = None) -> dict[str, HeadScores]:
    """Per head, the attention share paid to each kind of token of a vision transformer: ``cls``, ``registers``
    (absent without register tokens) and ``massive_patches`` (each image's massive patch positions, from a scan).

    >>> from mi_massive.core.loading.vit import load_vision
    >>> from mi_massive.core.corpus.images import image_corpus
    >>> model = load_vision("toy-vit-reg", plant=[(1, 7, 5, 20000.0)])
    >>> shares = vision_heads(model, image_corpus(model, n_images=2))
    >>> sorted(shares), shares["massive_patches"].massive_positions, shares["registers"].massive_positions[0]
    (['cls', 'massive_patches', 'registers'], [[7], [7]], [1, 2, 3, 4])

    Each value is a :class:`~mi_massive.analyses.heads.record.HeadScores` of :func:`heads` whose ``to_massive``
    is the share (0..1) of attention from queries q >= ``min_query`` to that group (``to_first`` is the CLS share
    in all three); images without a massive patch have NaN there. ``groups``: which of the three to compute.
    """
    from mi_massive.core.loading.vit import is_vision

    if not is_vision(model):
        raise MiMassiveError("vision_heads needs a vision model (mi_massive.core.loading.vit.load_vision); use heads")
    cfg = model.cfg
    sets: dict[str, list[list[int]]] = {}
    if "cls" in groups:
        sets["cls"] = [[0]] * len(corpus)
    if "registers" in groups and cfg.n_registers:
        sets["registers"] = [list(range(1, cfg.n_prefix))] * len(corpus)
    if "massive_patches" in groups:
        if scan_result is None:
            from mi_massive.analyses.scan.run import scan

            scan_result = scan(model, corpus, batch_size=batch_size, progress=progress)
        massive = massive_positions_from_scan(scan_result, len(corpus))
        sets["massive_patches"] = [[p for p in ps if p >= cfg.n_prefix] for ps in massive]
    return {name: heads(model, corpus, massive_positions=s, min_query=min_query, batch_size=batch_size,
                        progress=progress, options={"group": name, **(options or {})})
            for name, s in sets.items()}
