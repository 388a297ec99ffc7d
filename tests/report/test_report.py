"""The report: sections, "not computed" summary, loading earlier JSON by weights, atomic re-runs, CLI."""

from __future__ import annotations

import json
import re

import pytest

from mi_massive.core import safe_html as sh

HOSTILE = 'r "q" </script><img src=x onerror="window.__pwned=1"> <!-- c'
SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


@pytest.fixture(scope="module")
def planted():
    from mi_massive.core.loading import load_toy

    return load_toy("toy-gpt2", seed=0, plant=[(1, 5, 500.0)])


def _fast_sections():
    from mi_massive.report.run import OPTIONAL, _optional, attention_section, scan_section

    return [scan_section, attention_section, *[_optional(s) for s in OPTIONAL if s.report.section in ("heads", "attribution")]]


@pytest.fixture(scope="module")
def report(planted, tmp_path_factory):
    from mi_massive.report.run import build_report

    out = tmp_path_factory.mktemp("report")
    # heads/attribution are skipped so that their "not computed" path is what this page shows
    return out, build_report(planted, HOSTILE, out, prepend_bos=True, sections=_fast_sections(),
                             options={"skip": ["heads", "attribution"]})


def test_report_files_and_summary(report):
    out, paths = report
    assert {p.name for p in out.iterdir()} == {"report.html", "report.json", "scan.json", "attention.json"}
    data = json.loads(paths["json"].read_text())
    s = data["summary"]
    assert s["dims"].startswith("dim 5") and s["where"].startswith("First massive block: 1 (of 3)")
    assert s["writers"] == "not computed" and s["removal"] == "not computed"
    status = {x["id"]: x["status"] for x in data["sections"]}
    assert status == {"scan": "computed", "attention": "computed", "heads": "not computed",
                      "attribution": "not computed"}
    assert data["provenance"]["model"]["fingerprint"].startswith("toy:toy-gpt2")


def test_report_page_is_self_contained_and_escaped(report):
    _, paths = report
    page = paths["report"].read_text(encoding="utf-8")
    markup = SCRIPT_ELEMENT.sub("<script></script>", page)
    assert '<section id="summary">' in markup and '<section id="scan">' in markup and '<section id="attention">' in markup
    assert "<i>not computed</i>" in markup
    assert sh.text(HOSTILE) in markup and "<img" not in markup
    assert page.count("var CircuitsVis") == 1 and page.count("Plotly") > 0
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page, re.IGNORECASE)
    assert not re.search(r"from\s*[\"']https?://|unpkg\.com", page)  # plotly.js only names cdn.plot.ly in a topojson default
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.DOTALL):
        sh.check_script_body(body)


def _head_scores(fingerprint: str):
    from mi_massive.analyses.heads.record import HeadScore, HeadScores

    heads = [HeadScore(layer=l, head=h, to_first=0.1 * (l + h), to_first_ci95=[0.0, 1.0], to_massive=None,
                       to_massive_ci95=None, n_massive=0) for l in range(3) for h in range(4)]
    return HeadScores(provenance={"model": {"fingerprint": fingerprint}}, n_layers=3, n_heads=4, min_query=1,
                      massive_positions=[[0]], heads=heads, per_sequence_first=[], per_sequence_massive=[])


def test_report_loads_earlier_results_of_the_same_weights_only(planted, tmp_path):
    from mi_massive.core.loading import model_info
    from mi_massive.report.run import build_report

    results = tmp_path / "earlier"
    results.mkdir()
    _head_scores(model_info(planted).fingerprint).save(results / "heads.json")
    paths = build_report(planted, "The cat sat.", tmp_path / "a", results_dir=results, sections=_fast_sections(),
                         options={"skip": ["heads"]})
    data = json.loads(paths["json"].read_text())
    heads = next(s for s in data["sections"] if s["id"] == "heads")
    assert heads["status"] == "loaded" and "L2H3 0.50" in data["summary"]["sinks"]
    assert "L2H3" in paths["report"].read_text()

    _head_scores("sha256:other").save(results / "heads.json")
    paths = build_report(planted, "The cat sat.", tmp_path / "b", results_dir=results, sections=_fast_sections(),
                         options={"skip": ["heads"]})
    heads = next(s for s in json.loads(paths["json"].read_text())["sections"] if s["id"] == "heads")
    assert heads["status"] == "not computed" and "other weights" in heads["note"]


def test_report_rerun_replaces_files_atomically(planted, tmp_path):
    from mi_massive.report.run import build_report

    first = build_report(planted, "One text here.", tmp_path, sections=_fast_sections())
    before = json.loads(first["attention"].read_text())["text"]
    second = build_report(planted, "Another text.", tmp_path, sections=_fast_sections())
    assert before == "One text here." and json.loads(second["attention"].read_text())["text"] == "Another text."
    assert "Another text." in second["report"].read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_report_cli_and_errors(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["report", "--model", "toy-gpt2", "--text", "Hello world.", "--out", str(tmp_path),
                              "--skip", "intervention,mlp,svd,tokens,variants,heads,attribution,ablation"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.html").is_file() and "writers: not computed" in res.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert {s["id"]: s["note"] for s in data["sections"]}["mlp"] == "skipped (--skip)"
    for args, msg in ((["--skip", "bogus"], "unknown analysis"), (["--corpus", "builtin"], "exactly one"),
                      (["--results", str(tmp_path / "nope")], "not a directory")):
        res = runner.invoke(app, ["report", "--model", "toy-gpt2", "--text", "x y", *args, "--out", str(tmp_path)])
        assert res.exit_code == 2 and msg in res.output, res.output


def test_report_computes_writers_and_removal_on_a_planted_toy(tmp_path):
    """heads/attribution/ablation run through their report hooks (ReportHooks.compute); the planted writer is named."""
    import json as _json

    from mi_massive import load_toy, text_corpus
    from mi_massive.report.run import build_report

    model = load_toy("toy-gpt2", seed=1, plant=[(1, 5, 1000.0)])
    corpus = text_corpus(model, ["The cat sat on the mat today.", "Dogs bark loudly at night here"], prepend_bos=True)
    paths = build_report(model, corpus, tmp_path / "rep", options={"skip": ["intervention", "mlp", "svd", "tokens"]})
    record = _json.loads(paths["json"].read_text())
    status = {s["id"]: s["status"] for s in record["sections"]}
    assert status["heads"] == status["attribution"] == status["ablation"] == "computed"
    assert "h1[pos 0, dim 5] = 1000 is written mainly by MLP1 (100% of it)" in record["summary"]["writers"]
    assert "MLP 1 off" in record["summary"]["removal"] and "beyond noise" in record["summary"]["removal"]
    assert {"heads", "attribution", "ablation"} <= set(paths)


def test_results_from_an_unfinished_run_are_flagged(tmp_path):
    """``report --results DIR`` whose manifest says the last run did not complete: a warning line, the report goes on."""
    import json

    from typer.testing import CliRunner

    from mi_massive.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["heads", "-m", "toy-llama", "--text", "hello there friend", "-o",
                               str(tmp_path / "r")]).exit_code == 0
    manifest = tmp_path / "r" / "mi_massive_manifest.json"
    data = json.loads(manifest.read_text())
    data["status"] = "running"
    manifest.write_text(json.dumps(data))
    r = runner.invoke(app, ["report", "-m", "toy-llama", "--text", "hello there", "--results", str(tmp_path / "r"),
                            "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "warning: --results" in r.output and "is running: its outputs may be mixed" in r.output
