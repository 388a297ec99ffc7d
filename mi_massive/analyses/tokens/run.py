"""Token analysis: which tokens are massive (start / delimiter / other), and function vs content words."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from mi_massive.analyses.scan.detect import ABS_THRESHOLD, REL_THRESHOLD
from mi_massive.analyses.svd.linalg import cosine, oriented_svd
from mi_massive.analyses.tokens.metrics import METRICS, compare_groups, describe_effect, wilson_ci, word_metrics
from mi_massive.analyses.tokens.wordlists import is_delimiter, normalize, word_group
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.analyses.mlp.run import capture_layer
from mi_massive.analyses.scan.run import scan
from mi_massive.core.provenance import provenance
from mi_massive.analyses.tokens.record import NonInitialEntry, TokenClass, TokensResult, TopToken, WordComparison
from mi_massive.core.names import act_name
from mi_massive.core.loading.vit import refuse_vision

TOKEN_CLASSES = ("start", "delimiter", "other")


def token_class(token: str, position: int) -> str:
    """'start' (position 0, e.g. BOS), 'delimiter' ('.', ',', '\\n', ...) or 'other'."""
    if position == 0:
        return "start"
    return "delimiter" if is_delimiter(token) else "other"


def tokens_analysis(model, corpus: Corpus, *, layer: int | None = None, occurrences: int = 8, k: int = 100,
                    n_boot: int = 2000, seed: int = 0, batch_size: int = 8, abs_threshold: float = ABS_THRESHOLD,
                    rel_threshold: float = REL_THRESHOLD, options: dict[str, Any] | None = None) -> TokensResult:
    """Massive-token frequencies by class over every block, and the four function/content metrics at ``layer``
    (default: the first massive block), each word type represented by exactly ``occurrences`` random occurrences.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> r = tokens(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), n_boot=20)
    >>> r.to_dataframe()[["class", "n_massive"]].values.tolist()
    [['start', 1], ['delimiter', 0], ['other', 0]]

    Rates are fractions with Wilson 95% CIs; ``words`` compares function and content word types on
    ``k`` components of W_out (effect sizes unitless, ``n_boot`` bootstrap resamples for their CIs).
    """
    refuse_vision(model, "tokens", "its classes are text tokens (delimiters, function and content words)")
    if occurrences < 2:
        raise MiMassiveError("--occurrences must be at least 2 (stability needs pairs)")
    res = scan(model, corpus, abs_threshold=abs_threshold, rel_threshold=rel_threshold, batch_size=batch_size,
               include_embed=False, progress=True)
    L = layer if layer is not None else res.summary.get("first_layer")
    if L is None:
        raise MiMassiveError("no massive activation in this corpus; pass --layer to study the word metrics anyway")
    toks = res.str_tokens
    massive_at: dict[tuple[int, int], list] = defaultdict(list)
    for e in res.massive:
        massive_at[(e.sequence, e.position)].append(e)
    # ---- token classes
    counts, hits = Counter(), Counter()
    for s, row in enumerate(toks):
        for p, t in enumerate(row):
            c = token_class(t, p)
            counts[c] += 1
            hits[c] += (s, p) in massive_at
    classes = []
    for c in TOKEN_CLASSES:
        lo, hi = wilson_ci(hits[c], counts[c])
        classes.append({"class": c, "n_tokens": counts[c], "n_massive": hits[c],
                        "rate": hits[c] / counts[c] if counts[c] else None, "rate_ci95": [lo, hi]})
    occ = Counter(t for row in toks for t in row)
    massive_tok = Counter(toks[s][p] for s, p in massive_at)
    top_tokens = [{"token": t, "n_massive": n, "n_in_corpus": occ[t]}
                  for t, n in massive_tok.most_common(20)]
    non_initial = []
    for (s, p), es in sorted(massive_at.items()):
        if p > 0:
            non_initial.append({"sequence": s, "position": p, "token": toks[s][p], "layers": [min(e.layer for e in es),
                                max(e.layer for e in es)], "dims": sorted({e.dim for e in es}),
                                "max_abs": max(abs(e.value) for e in es)})
    # ---- function vs content words at block L
    dims_L = Counter(e.dim for e in res.massive if e.layer == L)
    d = dims_L.most_common(1)[0][0] if dims_L else int(np.argmax(res.layer(L).dim_max))
    cap = capture_layer(model, corpus, L, [act_name("post", L)], batch_size=batch_size,
                        abs_threshold=abs_threshold, rel_threshold=rel_threshold)
    H = cap.acts[act_name("post", L)]
    row_of = {(int(s), int(p)): i for i, (s, p) in enumerate(zip(cap.seq.tolist(), cap.pos.tolist()))}
    svd = oriented_svd(model.W_out[L].detach(), d)
    k = min(k, svd.U.shape[1])
    U_k, S_k, u1 = svd.U[:, :k], svd.S[:k], svd.U[:, 0]
    by_type: dict[tuple[str, str], list[int]] = defaultdict(list)
    token_rows: dict[str, list[int]] = defaultdict(list)
    trig: dict[str, list[bool]] = defaultdict(list)
    for s, row in enumerate(toks):
        for p in range(1, len(row)):
            g = word_group(row[p], row[p + 1] if p + 1 < len(row) else None, previous=row[p - 1])
            if g is None:
                continue
            by_type[(g, normalize(row[p]))].append(row_of[(s, p)])
            token_rows[g].append(row_of[(s, p)])
            trig[g].append((s, p) in massive_at)
    rng = np.random.default_rng(seed)
    per_word = []
    for (g, w), rows in sorted(by_type.items()):
        if len(rows) < occurrences:
            continue
        pick = sorted(rng.choice(rows, occurrences, replace=False).tolist())
        per_word.append({"word": w, "group": g, "n_occurrences": len(rows), **word_metrics(H[pick], U_k, S_k, u1)})
    tests, sentences = {}, []
    for m in METRICS:
        fx = [w[m] for w in per_word if w["group"] == "function" and np.isfinite(w[m])]
        cx = [w[m] for w in per_word if w["group"] == "content" and np.isfinite(w[m])]
        tests[m] = compare_groups(fx, cx, n_boot=n_boot, seed=seed)
        sentences.append(describe_effect(tests[m], m))
    cos_all = cosine(H, u1).numpy()
    tok_level = compare_groups(cos_all[token_rows["function"]], cos_all[token_rows["content"]], n_boot=n_boot, seed=seed)
    trigger = {}
    for g in ("function", "content"):
        n, h = len(trig[g]), int(sum(trig[g]))
        trigger[g] = {"n_tokens": n, "n_massive": h, "rate": h / n if n else None, "rate_ci95": list(wilson_ci(h, n))}
    start_cos = float(cos_all[(cap.pos == 0).numpy()].mean()) if (cap.pos == 0).any() else None
    words = {"layer": L, "dim": d, "k": k, "occurrences_per_type": occurrences, "metric_names": list(METRICS),
             "n_types": {"function": sum(w["group"] == "function" for w in per_word),
                         "content": sum(w["group"] == "content" for w in per_word)},
             "per_word": per_word, "tests": tests, "token_level_alignment": tok_level, "trigger_rates": trigger,
             "start_alignment": start_cos}
    conclusion = _conclusion(classes, non_initial, tests, sentences, tok_level, trigger, start_cos)
    opts = {"abs_threshold": abs_threshold, "rel_threshold": rel_threshold, "occurrences": occurrences, "k": k,
            "n_boot": n_boot, "seed": seed, **(options or {})}
    return TokensResult(provenance=provenance(model, corpus, seed=seed, options=opts), layer=L,
                        classes=[TokenClass.from_dict(c) for c in classes],
                        top_tokens=[TopToken.from_dict(t) for t in top_tokens],
                        non_initial=[NonInitialEntry.from_dict(e) for e in non_initial[:200]],
                        words=WordComparison.from_dict(words), conclusion=conclusion)


tokens = tokens_analysis


def _conclusion(classes, non_initial, tests, sentences, tok_level, trigger, start_cos) -> list[str]:
    by = {c["class"]: c for c in classes}
    out = [f"massive tokens: start {by['start']['n_massive']}/{by['start']['n_tokens']}, delimiters "
           f"{by['delimiter']['n_massive']}/{by['delimiter']['n_tokens']}, other {by['other']['n_massive']}/"
           f"{by['other']['n_tokens']} ({len(non_initial)} non-initial massive positions)."]
    out += sentences
    if tok_level.get("d") is not None:
        out.append(f"token-level alignment (pseudo-replicated, for comparison with LUDAN): d = {tok_level['d']:.3f} "
                   f"[{tok_level['d_ci95'][0]:.3f}, {tok_level['d_ci95'][1]:.3f}], Welch p = {tok_level['welch_p']:.3g}.")
    if start_cos is not None:
        out.append(f"position 0 alignment cos(h, u_1) = {start_cos:.3f}, against means of "
                   f"{tok_level.get('mean_x') or float('nan'):.4f} (function) and {tok_level.get('mean_y') or float('nan'):.4f} "
                   f"(content): the massive token is what aligns with u_1, not a word class.")
    out.append(f"massive rate: function {trigger['function']['n_massive']}/{trigger['function']['n_tokens']}, content "
               f"{trigger['content']['n_massive']}/{trigger['content']['n_tokens']} (non-initial words only).")
    big = [m for m, t in tests.items() if t.get("d") is not None and np.isfinite(t["d"]) and abs(t["d"]) >= 0.5
           and not (t["d_ci95"][0] <= 0 <= t["d_ci95"][1])]
    if all(t.get("d") is None for t in tests.values()):
        out.append("conclusion: too few whole-word types to compare function and content words here "
                   "(a byte-level tokenizer or a short corpus); the word-class question is untested.")
        return out
    out.append("conclusion: " + (
        f"function and content words differ with at least a medium effect on {', '.join(big)}; none of this makes "
        "them massive (see the rates)." if big else
        "no metric separates function from content words by a medium or larger effect; word class does not explain "
        "massive activations."))
    return out
