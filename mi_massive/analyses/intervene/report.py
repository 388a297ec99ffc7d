"""How ``mi-massive report`` shows interventions: record -> (section HTML, summary facts).

>>> from mi_massive.analyses.intervene.record import InterventionResult
>>> html, facts = intervention_view(InterventionResult(provenance={}, first_layer=1, dims=[5],
...     edited_layers_all=[1], calibration=None, evaluation=None, runs=[], table=[]))
>>> facts
{}
"""

from __future__ import annotations

from mi_massive.analyses.intervene.run import intervene, split_corpus
from mi_massive.core.html import fmt, notes_html, records_table
from mi_massive.errors import MiMassiveError


def intervention_view(rec) -> tuple[str, dict[str, str]]:
    """Perplexity interventions (an :class:`~mi_massive.analyses.intervene.record.InterventionResult`): the
    table, the notes and a one-line fact for the summary (PPL per condition and its ratio to the original)."""
    table = [row.to_dict() for row in rec.table]
    parts = [notes_html(rec.notes or []), records_table(table)]
    fact = "; ".join(f"{row.condition} ({row.variant}): PPL {fmt(row.ppl, 4)}"
                     + (f", x{fmt(row.ratio, 3)} of the original" if row.ratio is not None else "")
                     for row in rec.table[:5])
    return "\n".join(parts), ({"removal": f"Interventions (perplexity): {fact}."} if fact else {})


def compute(model, corpus, scan_result):
    """Hook for ``mi-massive report``: half the corpus evaluates, the other half calibrates the means."""
    if len(corpus) < 2:
        raise MiMassiveError("needs a corpus of at least 2 sequences (evaluation + disjoint calibration)")
    ev, cal = split_corpus(corpus, max(1, len(corpus) // 2))
    return intervene(model, ev, cal, n_control=1, n_boot=1000, options={"from": "mi-massive report"})
