"""How ``mi-massive report`` shows interventions: record -> (section HTML, summary facts).

>>> from mi_massive.analyses.intervene.record import InterventionResult
>>> html, facts = intervention_view(InterventionResult(provenance={}, first_layer=1, dims=[5],
...     edited_layers_all=[1], calibration=None, evaluation=None, runs=[], table=[]))
>>> facts
{}
"""

from __future__ import annotations

import math

from mi_massive.analyses.intervene.run import intervene, split_corpus
from mi_massive.core.html import fmt, fmt_ci, notes_html, table_html
from mi_massive.errors import MiMassiveError


MIN_CHANGE = 0.01  # a perplexity ratio within 1% of 1 is not headlined, however narrow its CI


def _changes(row) -> bool:
    """The perplexity ratio's 95% CI excludes 1 (a change beyond the bootstrap noise)."""
    return bool(row.ratio_ci95) and row.ratio is not None and not (row.ratio_ci95[0] <= 1.0 <= row.ratio_ci95[1])


def _headline(row) -> bool:
    """Worth the summary: beyond noise (:func:`_changes`) and by at least :data:`MIN_CHANGE` (1%)."""
    return _changes(row) and abs(row.ratio - 1.0) >= MIN_CHANGE


def intervention_fact(rows) -> str:
    """The summary line: the conditions whose perplexity ratio is beyond noise (CI excludes 1) by at
    least 1%, biggest change first, after the original PPL; the others are only counted.

    >>> from mi_massive.analyses.intervene.record import PplRow
    >>> rows = [PplRow("original", "-", 44.81, [40.0, 50.0], 1.0, [1.0, 1.0]),
    ...         PplRow("zero (one layer)", "one", 1.556e6, [8e5, 3e6], 34700.0, [2e4, 6e4]),
    ...         PplRow("mean (one layer)", "one", 44.34, [40.0, 49.0], 0.99, [0.97, 1.01]),
    ...         PplRow("control 0 (one layer)", "one", 44.81, [40.0, 50.0], 1.0000002, [1.0000001, 1.0000004])]
    >>> intervention_fact(rows)
    'PPL 44.8 originally; zero (one layer): PPL 1.56e6, x34700 (95% CI 20000–60000); 2 other conditions within noise or under 1%'
    """
    original = next((r for r in rows if r.condition == "original"), None)
    others = [r for r in rows if r is not original]
    beyond = sorted([r for r in others if _headline(r)], key=lambda r: -abs(math.log(r.ratio)) if r.ratio > 0 else 0.0)
    parts = [f"PPL {fmt(original.ppl)} originally"] if original else []
    parts += [f"{r.condition}: PPL {fmt(r.ppl)}, x{fmt(r.ratio)} (95% CI {fmt_ci(*r.ratio_ci95)})" for r in beyond[:3]]
    if len(beyond) > 3:
        parts.append(f"{len(beyond) - 3} more beyond noise")
    quiet = len(others) - len(beyond)
    if quiet:
        parts.append(f"{quiet} other condition{'s' if quiet != 1 else ''} within noise or under 1%" if beyond
                     else f"no condition changes it beyond noise by 1% or more ({quiet} tried)")
    return "; ".join(parts)


def intervention_view(rec) -> tuple[str, dict[str, str]]:
    """Perplexity interventions (an :class:`~mi_massive.analyses.intervene.record.InterventionResult`): the
    table (PPL and ratio to the original with 95% CIs), the notes, and a one-line fact for the summary
    (the conditions that change perplexity beyond noise, :func:`intervention_fact`)."""
    rows = [[r.condition, r.variant, fmt(r.ppl), fmt_ci(*r.ci95) if r.ci95 else "\u2014", fmt(r.ratio),
             fmt_ci(*r.ratio_ci95) if r.ratio_ci95 else "\u2014",
             "yes" if _headline(r) else ("under 1%" if _changes(r) else "no")]
            for r in rec.table]
    parts = [notes_html(rec.notes or []),
             table_html(["condition", "variant", "perplexity", "95% CI", "ratio to original", "95% CI",
                         "beyond noise"], rows, source="intervene.json")]
    fact = intervention_fact(rec.table) if rec.table else ""
    return "\n".join(p for p in parts if p), ({"removal": f"Interventions (perplexity): {fact}."} if fact else {})


def compute(model, corpus, scan_result):
    """Hook for ``mi-massive report``: half the corpus evaluates, the other half calibrates the means."""
    if len(corpus) < 2:
        raise MiMassiveError("needs a corpus of at least 2 sequences (evaluation + disjoint calibration)")
    ev, cal = split_corpus(corpus, max(1, len(corpus) // 2))
    return intervene(model, ev, cal, n_control=1, n_boot=1000, options={"from": "mi-massive report"})
