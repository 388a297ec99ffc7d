"""The Record base: save/load return the class itself, short repr, compact notebook table, DataFrame, clear errors."""

from __future__ import annotations

import json

import pytest

import mi_massive as mm
from mi_massive.core.records import Record


@pytest.fixture(scope="module")
def scan_result():
    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    return mm.scan(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)


def test_every_registered_record_is_a_record():
    for analysis in mm.ANALYSES:
        assert issubclass(analysis.record, Record), analysis.name


def test_save_load_round_trip_returns_the_class(scan_result, tmp_path):
    path = scan_result.save(tmp_path / "scan.json")
    back = mm.ScanResult.load(path)
    assert type(back) is mm.ScanResult
    assert back == scan_result
    assert type(back.layers[0]).__name__ == "LayerRecord" and type(back.massive[0]).__name__ == "MassiveEntry"
    assert json.loads(path.read_text())["summary"]["dims"][0]["dim"] == 5  # the JSON contract keeps its keys


def test_repr_is_one_short_line_and_html_is_compact(scan_result):
    text = repr(scan_result)
    assert text.startswith("ScanResult(") and "\n" not in text and len(text) < 300
    html = scan_result._repr_html_()
    assert "<table" in html and "ScanResult" in html
    assert "created_utc" not in html and "versions" not in html  # provenance summarised, not dumped


def test_to_dataframe_is_the_main_table(scan_result):
    df = scan_result.to_dataframe()
    assert len(df) == len(scan_result.layers) and {"layer", "hook"} <= set(df.columns)


def test_load_rejects_another_record_file(scan_result, tmp_path):
    path = scan_result.save(tmp_path / "scan.json")
    with pytest.raises(mm.MiMassiveError, match="HeadScores"):
        mm.HeadScores.load(path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(mm.MiMassiveError, match="JSON object"):
        mm.ScanResult.load(tmp_path / "bad.json")
