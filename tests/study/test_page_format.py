"""``study.html`` writes its numbers as every other page does (:mod:`mi_massive.core.html`): 3 significant digits,
``a–b`` intervals (en dash; spaced around a negative bound; more digits while the bounds read alike),
``n/a (1 sequence)`` for a single chunk and ``—`` for a missing value. Built from a hand-made record (no Ray)."""

from __future__ import annotations

from html.parser import HTMLParser

from mi_massive.study.page import HEADER, study_page, study_table
from mi_massive.study.record import HeadShare, ModelRow, StudyRecord

SETTINGS = {"corpus": "builtin", "n_samples": 4, "seq_len": 64, "seed": 0, "dtype": "float32"}
FULL = ModelRow(model="near-one", folder="near-one", architecture="LlamaForCausalLM", n_params=134_515_008,
                n_layers=30, prepend_bos=True, bos_source="auto", has_massive=True, first_layer=11, dims=[507, 247],
                largest=24924.0, largest_ratio=14422.0, positions=[0], tokens=["n"], ppl_zero=1.0004,
                ppl_zero_ci95=[1.0001, 1.0031], ppl_mean=0.5, ppl_mean_ci95=[-2.0, 3.0],
                top_heads=[HeadShare("L18H8", 0.998)], writer="MLP11", writer_share=0.99)
EMPTY = ModelRow(model="bare", folder="bare", missing=["scan", "intervene"])


def _record(n_samples: int = 4) -> StudyRecord:
    return StudyRecord(settings={**SETTINGS, "n_samples": n_samples}, models=[FULL, EMPTY], profiles=[], units=[])


def _cells(record: StudyRecord) -> list[dict[str, str]]:
    """The rendered page's first table, each row as {header: cell text}."""

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.tables = 0
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            self.tables += tag == "table"
            if self.tables == 1 and tag == "tr":
                self.rows.append([])
            elif self.tables == 1 and tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed(study_page(record))
    header, *rows = parser.rows
    assert header == HEADER
    return [dict(zip(header, r)) for r in rows]


def test_ratio_near_one_negative_bound_and_missing_values():
    full, empty = _cells(_record())
    assert full["PPL x orig., zero (95% CI)"] == "1.00 (1.000\u20131.003)"  # was "1 (1-1)"
    assert full["PPL x orig., mean (95% CI)"] == "0.500 (-2.00 \u2013 3.00)"  # was "0.5 (-2-3)"
    assert (full["largest |h|"], full["x median"], full["parameters"]) == ("24900", "14400", "135M")
    assert (full["massive"], full["first block"]) == ("yes", "11 of 30")
    assert full["top sink heads (share to pos 0)"] == "L18H8 0.998"
    assert full["main writer (share)"] == "MLP11 (99.0%)"
    for column in ("parameters", "massive", "first block", "largest |h|", "x median", "PPL x orig., zero (95% CI)",
                   "PPL x orig., mean (95% CI)", "top sink heads (share to pos 0)", "main writer (share)"):
        assert empty[column] == "\u2014", column
    assert empty["missing"] == "scan, intervene"


def test_one_chunk_has_no_interval_and_the_table_data_is_what_the_page_shows():
    record = _record(n_samples=1)
    assert study_table(record)[1][11:13] == ["1.00 (n/a (1 sequence))", "0.500 (n/a (1 sequence))"]
    assert [list(r.values()) for r in _cells(record)] == study_table(record)[1:]
