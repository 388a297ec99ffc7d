"""Attention views and safe HTML: escaping, offline circuitsvis, the attention pipeline's numbers, the CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mi_massive.core import safe_html as sh

HOSTILE = 'x "q" \'s\' </script><img src=x onerror="window.__pwned=1"><h1 id="pwned">X</h1> <!-- c'
SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


def markup_only(page: str) -> str:
    """The page with every script element's content removed (safe because no script body contains '</script')."""
    return SCRIPT_ELEMENT.sub("<script></script>", page)


@pytest.fixture(scope="module")
def planted():
    from mi_massive.core.loading import load_toy

    return load_toy("toy-gpt2", seed=0, plant=[(1, 5, 500.0)])


@pytest.fixture(scope="module")
def hostile_result(planted):
    from mi_massive.analyses.attention.run import attention_analysis

    return attention_analysis(planted, HOSTILE, prepend_bos=True, layers=[1, 2], heads=[0, 2])


# ------------------------------------------------------------------------------------- safe_html
def test_script_json_is_inert_and_round_trips():
    obj = {"t": ["</script>", "<!--", "a&b", "\u2028", '"']}
    text = sh.script_json(obj)
    assert not re.search(r"[<>&]", text) and "\u2028" not in text
    assert json.loads(text) == obj


def test_escape_script_props_keeps_value():
    props = json.dumps({"tokens": [HOSTILE, "<!--", "-->"]})
    safe = sh.escape_script_props(props)
    assert "</" not in safe and "<!--" not in safe
    assert json.loads(safe) == json.loads(props)


def test_inline_js_neutralises_script_end_and_source_maps():
    src = 'var a = "<script></SCRIPT>"; var b = "<!--";\n//# sourceMappingURL=x.js.map\n'
    out = sh.inline_js(src)
    assert sh.check_script_body(out) == out
    assert "sourceMappingURL" not in out
    with pytest.raises(ValueError, match="unsafe"):
        sh.check_script_body(src)


def test_text_and_labels_escape_everything():
    assert sh.text(HOSTILE).count("<") == 0 and "&quot;" in sh.text(HOSTILE) and "&#x27;" in sh.text(HOSTILE)
    assert sh.plotly_label("<b>\n") == "&lt;b&gt;\\n"
    assert sh.token_labels(["a", "a"]) == ["0:a", "1:a"]


def test_html_page_has_no_network_policy():
    page = sh.html_page("<t>", "<p>x</p>")
    assert "Content-Security-Policy" in page and "default-src &#x27;none&#x27;" in page
    assert "<title>&lt;t&gt;</title>" in page


# ---------------------------------------------------------------------------------- circuitsvis
def test_circuitsvis_fragment_escapes_hostile_tokens():
    from mi_massive.analyses.attention.figures import attention_heads_html

    tokens = ["a", HOSTILE, "<!--"]
    pattern = torch.softmax(torch.randn(2, 3, 3), -1)
    frag = attention_heads_html(pattern, tokens, element_id="cv-1", head_names=["h0", "h1"])
    assert frag.count("</script>") == 1 and frag.rstrip().endswith("</script>")
    assert "<!--" not in frag and 'CircuitsVis.render("cv-1"' in frag and '<div id="cv-1"' in frag
    props = json.loads(frag[frag.index("{"): frag.rindex("}") + 1])
    assert props["tokens"] == tokens and props["attentionHeadNames"] == ["h0", "h1"]
    assert "CircuitsVis=" not in frag  # the bundle is added once per page, not per view


def test_circuitsvis_fragment_rejects_bad_input():
    from mi_massive.analyses.attention.figures import attention_heads_html

    with pytest.raises(ValueError, match="pattern must be"):
        attention_heads_html(torch.ones(1, 2, 2), ["a"], element_id="x")
    with pytest.raises(ValueError, match="bad element id"):
        attention_heads_html(torch.ones(1, 1, 1), ["a"], element_id='x" onload="y')


def test_circuitsvis_bundle_is_local_and_safe():
    from mi_massive.analyses.attention.figures import circuitsvis_bundle_script

    script = circuitsvis_bundle_script()
    assert "var CircuitsVis" in script and len(script) > 500_000
    assert script.count("</script>") == 1 and "sourceMappingURL" not in script
    assert "unpkg.com" not in script and not re.search(r"\bimport\s*\(|from\s*[\"']https?://", script)


# ------------------------------------------------------------------------------------- pipeline
def test_attention_analysis_numbers(planted, hostile_result):
    from mi_massive.core.engine import run_capture

    r = hostile_result
    n = len(r.tokens)
    assert r.tokens[0] == planted.tokenizer.bos_token_id and r.text == HOSTILE
    assert r.massive_positions == [0] and r.massive_dims == [5] and r.sink_positions == [0]
    assert r.layers == [1, 2] and r.heads == [0, 2] and r.all_layers == [0, 1, 2]
    ids = torch.tensor([r.tokens])
    _, acts = run_capture(planted, ids, ["blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v",
                                         "blocks.1.attn.hook_attn_scores"], check=False)
    pat = acts["blocks.1.attn.hook_pattern"][0]
    torch.testing.assert_close(r.sink_share[1], pat[:, 1:, 0].mean(-1))
    torch.testing.assert_close(r.patterns[1], pat[[0, 2]])
    torch.testing.assert_close(r.value_norms[1], acts["blocks.1.attn.hook_v"][0].norm(dim=-1).mean(-1))
    logits = r.logits_mean[1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
    assert logits[upper].isnan().all() and not logits[~upper].isnan().any()
    torch.testing.assert_close(logits[~upper], acts["blocks.1.attn.hook_attn_scores"][0, [0, 2]].mean(0)[~upper])
    assert r.sink_share.shape == (3, 4) and ((r.sink_share >= 0) & (r.sink_share <= 1)).all()
    assert r.top_sink_heads(2)[0]["share"] == pytest.approx(r.sink_share.max().item())


def test_attention_analysis_gqa_and_no_massive(toy_llama):
    from mi_massive.analyses.attention.run import attention_analysis

    r = attention_analysis(toy_llama, "The cat sat on the mat.", prepend_bos=True)
    assert r.massive_positions == [] and r.sink_positions == [0] and "no massive" in r.sink_label
    assert r.value_norms.shape == (toy_llama.cfg.n_layers, len(r.tokens))
    assert r.patterns[r.layers[0]].shape == (toy_llama.cfg.n_heads, len(r.tokens), len(r.tokens))
    assert r.layers == [0, 1, 2]  # no massive block: first, middle, last


def test_attention_analysis_errors(planted):
    from mi_massive.errors import MiMassiveError
    from mi_massive.analyses.attention.run import attention_analysis

    with pytest.raises(MiMassiveError, match="layer 3 out of range"):
        attention_analysis(planted, "abc", layers=[3])
    with pytest.raises(MiMassiveError, match="head 9 out of range"):
        attention_analysis(planted, "abc", heads=[9])
    with pytest.raises(MiMassiveError, match="empty head"):
        attention_analysis(planted, "abc", heads=[])
    with pytest.raises(MiMassiveError, match="at least 2 tokens"):
        attention_analysis(planted, "a")


def test_attention_page_is_offline_and_escaped(hostile_result, tmp_path):
    from mi_massive.analyses.attention.run import write_attention

    page_path, json_path = write_attention(hostile_result, tmp_path)
    page = page_path.read_text(encoding="utf-8")
    markup = markup_only(page)
    assert "<img" not in markup and 'id="pwned"' not in markup and "<!-- c" not in markup
    assert sh.text(HOSTILE) in markup
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page, re.IGNORECASE)
    assert markup.count('class="cv-attention"') == 2 and page.count("var CircuitsVis") == 1
    assert page.count("plotly-graph-div") >= 4
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.DOTALL):
        sh.check_script_body(body)
    data = json.loads(json_path.read_text())
    assert data["text"] == HOSTILE and data["massive_positions"] == [0] and len(data["sink_share"]) == 3


def test_attention_cli(tmp_path):
    from typer.testing import CliRunner

    from mi_massive.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["attention", "--model", "toy-gpt2", "--text", HOSTILE, "--layers", "0-1",
                              "--heads", "1,3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "attention.html").is_file() and "wrote" in res.output
    data = json.loads((tmp_path / "attention.json").read_text())
    assert data["layers"] == [0, 1] and data["heads"] == [1, 3]
    for args, msg in ((["--layers", "5"], "layer 5 out of range"), (["--heads", "a"], "--heads expects"),
                      (["--layers", "3-1"], "--layers expects")):
        res = runner.invoke(app, ["attention", "--model", "toy-gpt2", "--text", "abc", *args, "--out", str(tmp_path)])
        assert res.exit_code == 2 and msg in res.output, res.output
    res = runner.invoke(app, ["attention", "--model", "toy-gpt2", "--text", "  ", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "empty" in res.output


def test_attention_record_round_trip_and_table(tmp_path):
    import mi_massive as mm
    from mi_massive.analyses.attention.record import AttentionResult
    from mi_massive.core.io import to_json

    model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    res = mm.attention(model, "The cat sat on the mat.", prepend_bos=True, layers=[1, 2])
    again = AttentionResult.load(res.save(tmp_path / "attention.json"))
    assert type(again) is AttentionResult
    assert to_json(again.to_dict()) == to_json(res.to_dict())
    assert again.patterns[1].shape == res.patterns[1].shape and again.top_sink_heads() == res.top_sink_heads()
    df = res.to_dataframe()
    assert list(df.columns) == ["layer", "head", "sink_share"] and len(df) == 3 * 4


def test_attention_records_whether_bos_was_chosen_automatically(tmp_path):
    """The attention command passes on how BOS was chosen: auto by default, user with --prepend-bos."""
    import json

    from typer.testing import CliRunner

    from mi_massive.cli import app

    for extra, source in (([], "auto"), (["--prepend-bos"], "user")):
        out = tmp_path / source
        r = CliRunner().invoke(app, ["attention", "-m", "toy-llama", "--text", "The cat sat.", *extra, "-o", str(out)])
        assert r.exit_code == 0, r.output
        corpus = json.loads((out / "attention.json").read_text())["provenance"]["corpus"]
        assert corpus["prepend_bos_source"] == source and corpus["prepend_bos"] == bool(extra)
