"""How the report writes numbers, tables and its summary: hand-checked values, constructed records.

* rounding: 3 significant digits, plain decimals (never ``3e+03``), CIs as ``a–b``, one-sequence CIs
  as ``n/a (1 sequence)``;
* tables: short, the rest one click away (``<details>``), no raw JSON in any cell;
* the summary headlines the biggest effect *beyond noise* (the issue's case: a "within noise" change
  at block 29 must not hide a -99% change at blocks 11-27), through the real report path (an
  ``ablation.json`` of the same weights, loaded);
* console: ``scan`` says what an entry is, ``heads`` never lists a head as both highest and lowest.
"""

from __future__ import annotations

import json
import re

import pytest

from mi_massive.core.html import cell_text, fmt, fmt_ci, fmt_pct, fmt_signed, generic_view, log_axis, table_html


@pytest.mark.parametrize("value, text", [
    (23147.1, "23100"), (24921.7, "24900"), (0.000123456, "0.000123"), (999.7, "1000"), (1.0, "1.00"),
    (-0.0123456, "-0.0123"), (0.5, "0.500"), (3000.0, "3000"), (44.81, "44.8"), (1.556e6, "1.56e6"),
    (2.5e-7, "2.50e-7"), (99999.6, "100000"), (999999.5, "1.00e6"), (7, "7"), (123456789, "123456789"),
    (0.0, "0"), (-0.0, "0"), (float("nan"), "n/a"), (float("inf"), "inf"), (None, "\u2014"), (True, "yes"),
])
def test_fmt_three_significant_digits(value, text):
    assert fmt(value) == text


def test_signed_percent_and_intervals():
    assert fmt_signed(12.345) == "+12.3" and fmt_signed(-22856.0) == "-22900" and fmt_signed(0.0) == "0"
    assert fmt_pct(-0.99412) == "-99.4%" and fmt_pct(0.05) == "+5.00%" and fmt_pct(None) == "\u2014"
    assert fmt_ci(0.1012, 0.13549) == "0.101\u20130.135"
    assert fmt_ci(-24245.4, -21889.8) == "-24200 \u2013 -21900"          # negative bounds: spaced dash
    assert fmt_ci(-0.2, 0.31) == "-0.200 \u2013 0.310"
    assert fmt_ci(0.3, 0.3, n=1) == "n/a (1 sequence)"                   # never a zero-width interval
    assert fmt_ci(0.3, 0.4, n=0) == "n/a (0 sequences)"
    assert fmt_ci(1.0004, 1.0031) == "1.000\u20131.003"                  # digits until the bounds differ
    assert fmt_ci(7.76e5, 3.12e6) == "7.76e5\u20133.12e6"                # one notation for both
    assert fmt_ci(1.0000001, 1.0000004) == "1.00\u20131.00"              # float-noise width: usual precision
    assert fmt_ci(None, 1.0) == "\u2014"


def test_log_axis_ticks_are_plain_numbers():
    ax = log_axis([0.07, 23147.0, 14.2], title="|h|")
    assert ax["type"] == "log" and ax["title"] == "|h|"
    assert ax["ticktext"] == ["0.01", "0.1", "1", "10", "100", "1000", "10k", "100k"]
    assert ax["tickvals"] == pytest.approx([1e-2, 1e-1, 1, 10, 100, 1e3, 1e4, 1e5])
    narrow = log_axis([40.0, 60.0])  # under three decades: 2 and 5 as well, only around the data
    assert narrow["ticktext"] == ["20", "50", "100"]
    assert log_axis([0.0, None, -3.0]) == {"type": "log"}  # nothing positive: plotly's own ticks


def test_cells_are_readable_text_never_json():
    assert cell_text([0.123456, 2, None]) == "0.123, 2, \u2014"
    assert cell_text(list(range(10))) == "0, 1, 2, 3, 4, 5, \u2026 (10 values)"
    assert cell_text({"a": 1.23456, "b": [1, 2], "rate_ci95": [0.0, 0.082]}) == "a: 1.23; b: 1, 2; rate_ci95: 0\u20130.0820"
    assert cell_text([{"x": 1}, {"x": 2}]) == "2 records" and cell_text([]) == "(none)"


def test_table_is_short_with_every_row_one_click_away():
    rows = [[i, i / 7, {"k": [i, i + 1]}] for i in range(25)]
    html = table_html(["i", "seventh", "pair"], rows, source="scan.json")
    short, rest = html.split("<details>")
    assert short.count("<tr>") == 1 + 10                      # header + 10 rows shown
    assert "show all 25 rows" in rest and rest.count("<tr>") == 1 + 25
    assert '<a href="scan.json">scan.json</a>' in rest
    assert "<td>0.143</td>" in short and "<td>k: 1, 2</td>" in short
    assert not re.search(r"<td>[\[{]", html)                  # no raw JSON cell
    assert table_html(["n"], [[1], [2]]).count("<details>") == 0


def test_generic_view_of_a_nested_record_has_no_json_cells():
    rec = {"provenance": {"model": {"name": "x"}}, "notes": ["a <note>"], "layer": 11, "r2": 0.987654,
           "classes": [{"class": "start", "rate": 1.0, "rate_ci95": [0.51, 1.0]}],
           "fits": {"start": {"r2": 0.5, "n": 4}, "other": {"r2": 0.25, "n": 92}},
           "spectrum": {"sigma1": 28.512, "singular_values": [float(30 - i) for i in range(30)],
                        "top": [{"k": i, "w": i / 3} for i in range(15)]}}
    html, facts = generic_view(rec)
    assert facts == {} and "provenance" not in html and "<li>a &lt;note&gt;</li>" in html
    assert "<td>0.988</td>" in html and "<td>0.510\u20131.00</td>" in html        # CI column as a-b
    assert "<td>start</td><td>0.500</td><td>4</td>" in html                      # dict of dicts: one row each
    assert "30 values, 1.00 to 30.0" in html                                       # figure data: count and range
    assert "<summary>spectrum.top (15)</summary>" in html                          # long nested table folded
    assert not re.search(r"<td>[\[{]", html) and '{"' not in html


# ------------------------------------------------------------------- the summary: beyond noise only
def _effect(layer, mean, ci, null, rel, metric="entry p0 d507"):
    from mi_massive.analyses.ablate.record import Effect

    within = null[0] <= mean <= null[1]
    return Effect(metric=metric, layer=layer, baseline=23000.0, ablated=23000.0 + mean, mean=mean, ci95=list(ci),
                  relative=rel, null_ci95=list(null), within_noise=within,
                  label="within noise" if within else "beyond noise")


def _issue_record(fingerprint: str = "sha256:x"):
    """The issue's case: MLP 11 off moves the entry by -99% at blocks 11-27 (beyond noise) and by -104% at
    block 29 (within the null's wide range); block 10 has a CI that holds 0 though outside the null."""
    from mi_massive.analyses.ablate.record import AblationResult, Condition

    effects = [_effect(l, 0.0, (0.0, 0.0), (-1.0, 1.0), 0.0) for l in range(10)]
    effects.append(_effect(10, -500.0, (-1200.0, 150.0), (-100.0, 100.0), -2.0))    # CI holds 0: never headlined
    effects += [_effect(l, -22800.0 - 5 * l, (-24200.0, -21900.0), (-19800.0, 2740.0), -0.990 - 0.0001 * l)
                for l in range(11, 28)]
    effects.append(_effect(28, -8150.0, (-9300.0, -7000.0), (-14800.0, 14200.0), -0.98))
    effects.append(_effect(29, -2990.0, (-4100.0, -2200.0), (-9260.0, 12900.0), -1.045))
    return AblationResult(provenance={"model": {"fingerprint": fingerprint}}, metrics=[], tracked=[[0, 507]],
                          baseline={"entry p0 d507@11": [23000.0] * 4}, rerun_max_abs_diff=0.0,
                          conditions=[Condition("MLP 11 off", "mlp", [11], "zero", effects)])


def test_headline_is_the_biggest_effect_beyond_noise():
    from mi_massive.analyses.ablate.report import ablation_view, beyond_noise, headline_effect

    rec = _issue_record()
    effects = rec.conditions[0].effects
    assert [e.layer for e in effects if beyond_noise(e)] == list(range(11, 28))
    assert headline_effect(effects).layer == 27                    # largest |relative| among 11-27 (-0.9927)
    html, facts = ablation_view(rec)
    fact = facts["removal"]
    assert fact == ("Ablations: MLP 11 off: entry p0 d507 changes by -22900 (-99.3%, 95% CI -24200 \u2013 -21900) "
                    "at block 27, beyond noise at blocks 11-27.")
    assert "block 29" not in fact and "block 10" not in fact
    assert "<td>11-27</td>" in html and "<details><summary>every effect" in html


def test_nothing_beyond_noise_is_said_so():
    from mi_massive.analyses.ablate.report import condition_fact

    quiet = [_effect(l, -10.0, (-30.0, 5.0), (-50.0, 50.0), -0.5) for l in range(3)]
    assert condition_fact("L1H2 off", quiet, n=4) == "L1H2 off: no change beyond noise in any block"


def test_report_summary_quotes_first_block_and_beyond_noise_effect(tmp_path):
    """End to end: the report loads an ablation.json of the same weights and its summary headlines blocks 11-27."""
    from mi_massive.analyses.registry import get
    from mi_massive.core.loading import load_toy, model_info
    from mi_massive.report.run import _optional, build_report, scan_section

    model = load_toy("toy-gpt2", seed=0, plant=[(1, 5, 500.0)])
    results = tmp_path / "earlier"
    results.mkdir()
    _issue_record(model_info(model).fingerprint).save(results / "ablation.json")
    paths = build_report(model, "The cat sat on the mat.", tmp_path / "out", prepend_bos=True, results_dir=results,
                         sections=[scan_section, _optional(get("ablate"))], options={"skip": ["ablation"]})
    summary = json.loads(paths["json"].read_text())["summary"]
    assert summary["where"].startswith("First massive block: 1 (of 3);")
    assert "beyond noise at blocks 11-27" in summary["removal"] and "block 29" not in summary["removal"]
    page = paths["report"].read_text(encoding="utf-8")
    assert "First massive block: 1" in page and "-99.3%" in page
    assert re.search(r'Full data: <a href="ablation.json">ablation.json</a>', page)


def test_intervention_fact_lists_only_changes_beyond_noise():
    from mi_massive.analyses.intervene.record import PplRow
    from mi_massive.analyses.intervene.report import intervention_fact

    rows = [PplRow("original", "-", 44.81, [33.9, 59.3], 1.0, [1.0, 1.0]),
            PplRow("mean (one layer)", "one", 44.34, [33.2, 59.3], 0.99, [0.979, 1.002]),
            PplRow("control 0 (one layer)", "one", 44.81, [33.9, 59.3], 1.0000002, [1.0000001, 1.0000004]),
            PplRow("zero (every layer)", "every", 1.454e6, [5.8e5, 3.6e6], 32500.0, [17200.0, 61200.0]),
            PplRow("zero (one layer)", "one", 1.556e6, [7.8e5, 3.1e6], 34700.0, [22900.0, 52700.0])]
    assert intervention_fact(rows) == (
        "PPL 44.8 originally; zero (one layer): PPL 1.56e6, x34700 (95% CI 22900\u201352700); "
        "zero (every layer): PPL 1.45e6, x32500 (95% CI 17200\u201361200); 2 other conditions within noise or under 1%")
    assert intervention_fact(rows[:3]) == ("PPL 44.8 originally; no condition changes it beyond noise by 1% or more "
                                           "(2 tried)")  # a CI that excludes 1 by float noise is not a headline


def test_heads_view_rounds_and_says_one_sequence():
    from mi_massive.analyses.heads.record import HeadScore, HeadScores
    from mi_massive.analyses.heads.report import heads_view

    score = {(l, h): 0.0123 + 0.1111 * (3 * l + h) for l in range(2) for h in range(3)}
    heads = [HeadScore(layer=l, head=h, to_first=v, to_first_ci95=[v, v], to_massive=None, to_massive_ci95=None,
                       n_massive=0) for (l, h), v in score.items()]
    rec = HeadScores(provenance={}, n_layers=2, n_heads=3, min_query=1, massive_positions=[[0]], heads=heads,
                     per_sequence_first=[], per_sequence_massive=[])
    html, facts = heads_view(rec)
    assert facts["sinks"] == ("Top sink heads over the corpus (attention to position 0): "
                              "L1H2 0.568, L1H1 0.457, L1H0 0.346, L0H2 0.235, L0H1 0.123.")
    assert "n/a (1 sequence)" in html and "0.568\u20130.568" not in html
    highest, lowest = html.split("<h3>Lowest")[0], html.split("<h3>Lowest")[1].split("<details>")[0]
    assert "Highest 5 heads" in highest and "Lowest 1 heads" in "<h3>Lowest" + lowest
    assert "L0H0" in lowest and "L0H0" not in highest      # 6 heads: 5 highest, then the 1 left, no overlap


# ------------------------------------------------------------------------------------------ console
def test_scan_console_says_what_an_entry_is(capsys):
    import mi_massive as mm
    from mi_massive.analyses.scan.command import print_scan_summary

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    result = mm.scan(model, mm.text_corpus(model, ["The cat sat on the mat.", "A dog."], prepend_bos=True),
                     progress=False)
    print_scan_summary(result)
    out = capsys.readouterr().out
    n = sum(1 for e in result.massive)
    assert n == 4  # dim 5 at position 0 of 2 sequences, blocks 1 and 2
    assert (f"massive entries: {n} (an entry = one value h[layer][sequence, position, dim] with |h| above both "
            "thresholds; counted over 2 sequences x 4 layers)") in out
    assert "massive dims: 5 (max |h| 3000.0, layers 1-2, 4 entries)" in out
    assert "entries per position (over all layers, sequences and dims): 0: 4" in out


def test_heads_console_top_and_bottom_never_overlap(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    res = CliRunner().invoke(app, ["heads", "--model", "toy-llama", "--text", "The cat sat on the mat today.",
                                   "--top-k", "8", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    top, bottom = res.output.split("\nlowest ")
    assert "highest 8 heads (of 12)" in top and bottom.startswith("4 heads:")
    heads_top = set(re.findall(r"L\dH\d", top))
    heads_bottom = set(re.findall(r"L\dH\d", bottom))
    assert len(heads_top) == 8 and len(heads_bottom) == 4 and not heads_top & heads_bottom
    assert "n/a (1 sequence)" in res.output
