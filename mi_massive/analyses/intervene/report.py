"""How ``mi-massive report`` shows interventions: record -> (section HTML, summary facts)."""

from __future__ import annotations

from typing import Any

from mi_massive.analyses.intervene.run import intervene, split_corpus
from mi_massive.core.html import fmt, notes_html, records_table
from mi_massive.errors import MiMassiveError


def intervention_view(rec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Perplexity interventions (``intervene.json`` as a dict): the table, notes and a one-line fact."""
    table = rec.get("table") or []
    parts = [notes_html(rec.get("notes") or []), records_table(table)]
    def line(row: dict[str, Any]) -> str:
        if "condition" in row and "ppl" in row:
            ratio = f", x{fmt(row['ratio'], 3)} of the original" if row.get("ratio") is not None else ""
            return f"{row['condition']} ({row.get('variant', '-')}): PPL {fmt(row['ppl'], 4)}{ratio}"
        return ", ".join(f"{k} {fmt(v)}" for k, v in list(row.items())[:3])

    fact = "; ".join(line(row) for row in table[:5])
    return "\n".join(parts), ({"removal": f"Interventions (perplexity): {fact}."} if fact else {})


def compute(model, corpus, scan_result):
    """Hook for ``mi-massive report``: half the corpus evaluates, the other half calibrates the means."""
    if len(corpus) < 2:
        raise MiMassiveError("needs a corpus of at least 2 sequences (evaluation + disjoint calibration)")
    ev, cal = split_corpus(corpus, max(1, len(corpus) // 2))
    return intervene(model, ev, cal, n_control=1, n_boot=1000, options={"from": "mi-massive report"})
