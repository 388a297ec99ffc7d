"""Open attention.html and report.html in headless Debian chromium and check they really rendered.

The browser is driven over the DevTools protocol (127.0.0.1 websocket, tornado's client, which the
dev extras already pull in through ipykernel). Every request is intercepted (``Fetch``): file:// is
allowed, anything else is recorded and failed, and the network is also switched off three other ways
(offline emulation, an unreachable proxy, a host resolver that resolves nothing). Checked per page:
circuitsvis and plotly elements exist after the scripts ran, no console error or uncaught
exception, no request to a non-file URL, and the hostile text is shown as text with no injected
element or script run.

Screenshots: every figure kind (each analysis' ``figures`` map, the report views' figures, the 3-D
view and the attention figures) is rendered on its own page and every page (report, attention) in
full; each plotly figure is captured as a PNG (``Page.captureScreenshot`` clipped to its div) and
checked: not blank (pixel variance and colour count of the decoded PNG), every axis carrying data
has a title in the DOM (3-D scenes: in the figure's layout, as WebGL draws them), a legend is drawn
whenever two or more traces are named, the title, subplot titles, legend and colour bar do not
overlap each other, the legend stays out of the plot area, and no tick label is cut off at the
figure's edge. ``MI_MASSIVE_SCREENSHOTS=<dir>`` keeps the PNGs for a look by eye
(``python tests/report/test_browser_pages.py <page.html> <dir>`` screenshots any page).

Skips with the reason when chromium is missing (``bash scripts/install_chromium.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MI_MASSIVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = 'Hi "there" \'you\' </script><img src=x onerror="window.__pwned=1"><h1 id="pwned">X</h1> <!-- end'
ALLOWED_SCHEMES = ("file:", "data:", "blob:", "about:")

READY_JS = """(() => {
  const cv = [...document.querySelectorAll('.cv-attention')];
  const pl = [...document.querySelectorAll('.plotly-graph-div')];
  return cv.every(d => d.querySelector('*') !== null) && pl.every(d => d.querySelector('.main-svg') !== null);
})()"""

SUMMARY_JS = """(() => ({
  cv_containers: document.querySelectorAll('.cv-attention').length,
  cv_rendered: [...document.querySelectorAll('.cv-attention')].filter(d => d.querySelectorAll('*').length > 5).length,
  cv_canvas_or_svg: [...document.querySelectorAll('.cv-attention')].filter(d => d.querySelector('canvas, svg')).length,
  plotly_divs: document.querySelectorAll('.plotly-graph-div').length,
  plotly_rendered: document.querySelectorAll('.plotly-graph-div .main-svg').length,
  plotly_loaded: typeof window.Plotly === 'object',
  circuitsvis_loaded: typeof window.CircuitsVis === 'object',
  pwned: window.__pwned === 1,
  injected_h1: document.getElementById('pwned') !== null,
  img_onerror: document.querySelectorAll('img[onerror]').length,
  text: document.body.innerText,
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
}))()"""

FIGURES_JS = r"""(() => {
  const box = el => { const r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}; };
  const overlap = (a, b) => Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x)) *
                            Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  const text = el => (el ? el.textContent : '').trim();
  return [...document.querySelectorAll('.plotly-graph-div')].map((gd, index) => {
    const fl = gd._fullLayout, data = gd._fullData || [];
    const frame = box(gd.querySelector('.main-svg'));
    const axes = Object.keys(fl).filter(k => /^[xy]axis\d*$/.test(k)).map(k => {
      const ax = fl[k], id = ax._id, letter = id[0];
      const used = data.some(t => t.visible !== false && (t[letter + 'axis'] || letter) === id);
      return {id, used, visible: ax.visible !== false, title: text(gd.querySelector('.g-' + id + 'title'))};
    });
    const scenes = Object.keys(fl).filter(k => /^scene\d*$/.test(k)).map(k =>
      ['xaxis', 'yaxis', 'zaxis'].map(a => ((fl[k][a].title || {}).text || '').trim()));
    const named = data.filter(t => t.visible !== false && t.showlegend !== false &&
                                   !/^(heatmap|surface|contour|waterfall)$/.test(t.type)).length;
    const legend = gd.querySelector('.infolayer .legend');
    const legendBox = legend ? box(legend.querySelector('.bg') || legend) : null;
    const labelled = [];
    const title = gd.querySelector('.infolayer .g-gtitle');
    if (text(title)) labelled.push({what: 'title', ...box(title)});
    gd.querySelectorAll('.infolayer .annotation').forEach(a =>
      labelled.push({what: 'subplot title "' + text(a).slice(0, 40) + '"', ...box(a)}));
    if (legendBox) labelled.push({what: 'legend', ...legendBox});
    gd.querySelectorAll('.infolayer .colorbar').forEach(c => labelled.push({what: 'colour bar', ...box(c)}));
    const overlaps = [];
    for (let i = 0; i < labelled.length; i++)
      for (let j = i + 1; j < labelled.length; j++)
        if (overlap(labelled[i], labelled[j]) > 4) overlaps.push(labelled[i].what + ' / ' + labelled[j].what);
    const plots = [...gd.querySelectorAll('.draglayer .nsewdrag')].map(box);
    if (legendBox) plots.forEach((p, i) => { if (overlap(p, legendBox) > 4) overlaps.push('legend / plot area ' + i); });
    const clipped = [...gd.querySelectorAll('.main-svg text')].filter(t => text(t)).filter(t => {
      const b = box(t);
      return b.w > 0 && (b.x < frame.x - 1 || b.y < frame.y - 1 || b.x + b.w > frame.x + frame.w + 1 ||
                         b.y + b.h > frame.y + frame.h + 1);
    }).map(t => text(t).slice(0, 30));
    const bars = data.filter(t => t.type === 'bar' && t.visible !== false).map(t => {
      const paths = [...gd.querySelectorAll('.barlayer .trace')].filter(g => g.__data__ && g.__data__[0] &&
                                                                           g.__data__[0].trace === t);
      const shown = paths.flatMap(g => [...g.querySelectorAll('.point path')]).map(box)
                         .filter(b => b.w >= 2 && b.h >= 2).length;
      const nonzero = (t.y || []).concat(t.x || []).filter(v => typeof v === 'number' && v !== 0).length;
      return {name: t.name || '', shown, nonzero};
    });
    return {index, rect: box(gd), title: text(gd.querySelector('.infolayer .g-gtitle')), axes, scenes, named,
            legend_items: legend ? legend.querySelectorAll('.traces').length : 0, overlaps, clipped, bars,
            webgl: gd.querySelectorAll('canvas').length};
  });
})()"""

PIXELS_JS = r"""(async (src) => {
  const img = new Image();
  await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = src; });
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sq = 0, ink = 0;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    n++; sum += l; sq += l * l; if (l < 235) ink++;
    colours.add((d[i] >> 4) << 8 | (d[i + 1] >> 4) << 4 | (d[i + 2] >> 4));
  }
  const mean = sum / n;
  return {width: c.width, height: c.height, std: Math.sqrt(Math.max(0, sq / n - mean * mean)),
          ink: ink / n, colours: colours.size};
})"""

SECTIONS_JS = """[...document.querySelectorAll('h1, section[id]')].map(el => {
  const r = el.getBoundingClientRect();
  return {id: el.id || 'top', x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
})"""


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"chromium not found at {CHROMIUM} (run: bash scripts/install_chromium.sh)"
    try:
        subprocess.run([CHROMIUM, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"chromium at {CHROMIUM} does not run: {err}"
    return None


class DevTools:
    """A minimal DevTools-protocol client over one websocket: commands, events, flat sessions."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pending, self.events = ws, 0, {}, []
        self.handlers = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                for fut in self.pending.values():
                    fut.set_exception(ConnectionError("devtools websocket closed"))
                return
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                fut = self.pending.pop(msg["id"])
                if "error" in msg:
                    fut.set_exception(RuntimeError(f"devtools error: {msg['error']}"))
                else:
                    fut.set_result(msg.get("result", {}))
            elif "method" in msg:
                self.events.append(msg)
                for handler in self.handlers:
                    handler(msg)

    async def send(self, method, params=None, session=None, timeout=60.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.write_message(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)


async def _load(ws_url: str, url: str, timeout: float, shots: Path | None = None) -> dict:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)
    dt = DevTools(ws)
    requests: list[str] = []
    tasks = []
    target = (await dt.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
    session = (await dt.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]

    def on_event(msg):
        if msg.get("sessionId") != session:
            return
        if msg["method"] == "Fetch.requestPaused":
            p = msg["params"]
            requests.append(p["request"]["url"])
            if p["request"]["url"].startswith("file:"):
                tasks.append(asyncio.ensure_future(dt.send("Fetch.continueRequest", {"requestId": p["requestId"]}, session)))
            else:
                tasks.append(asyncio.ensure_future(dt.send("Fetch.failRequest", {"requestId": p["requestId"],
                                                                                 "errorReason": "BlockedByClient"}, session)))
        elif msg["method"] == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])

    dt.handlers.append(on_event)
    for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
        await dt.send(method, session=session)
    await dt.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1}, session)
    await dt.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session)
    await dt.send("Page.navigate", {"url": url}, session)
    deadline = time.monotonic() + timeout
    ready = False
    while time.monotonic() < deadline:
        res = await dt.send("Runtime.evaluate", {"expression": READY_JS, "returnByValue": True}, session)
        loaded = any(e["method"] == "Page.loadEventFired" and e.get("sessionId") == session for e in dt.events)
        if loaded and res.get("result", {}).get("value") is True:
            ready = True
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # let late errors (React effects, plotly relayout) arrive
    summary = (await dt.send("Runtime.evaluate", {"expression": SUMMARY_JS, "returnByValue": True},
                             session))["result"]["value"]
    figures, pages = [], []
    if shots is not None:
        figures, pages = await _screenshots(dt, session, shots)
    errors = []
    for e in dt.events:
        if e.get("sessionId") != session:
            continue
        p = e["params"]
        if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif e["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    await asyncio.gather(*tasks, return_exceptions=True)
    dt.reader.cancel()
    ws.close()
    return {"ready": ready, "summary": summary, "errors": errors, "requests": requests, "figures": figures,
            "pages": pages}


async def _evaluate(dt: DevTools, session: str, expression: str, *, awaited: bool = False):
    res = await dt.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": awaited}, session)
    if "exceptionDetails" in res:
        raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
    return res["result"]["value"]


async def _capture(dt: DevTools, session: str, rect: dict, path: Path) -> dict:
    """A PNG of the page area ``rect`` (page coordinates) saved to ``path``, with its pixel statistics."""
    clip = {"x": rect["x"], "y": rect["y"], "width": max(1, rect["w"]), "height": max(1, min(rect["h"], 8000)),
            "scale": 1}
    data = (await dt.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                          session))["data"]
    path.write_bytes(base64.b64decode(data))
    stats = await _evaluate(dt, session, f"({PIXELS_JS})('data:image/png;base64,{data}')", awaited=True)
    return {"png": str(path), **stats}


async def _screenshots(dt: DevTools, session: str, folder: Path) -> tuple[list[dict], list[dict]]:
    """Every plotly figure and every section of the page as PNGs in ``folder``, with the DOM checks' facts."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = await _evaluate(dt, session, FIGURES_JS)
    for fig in figures:
        for attempt in range(3):  # far down a long page the first capture can precede the paint: scroll, retry
            await _evaluate(dt, session, f"document.querySelectorAll('.plotly-graph-div')[{fig['index']}]"
                                         ".scrollIntoView()")
            await asyncio.sleep(0.2 + attempt)
            fig["rect"] = await _evaluate(dt, session, f"""(() => {{
              const r = document.querySelectorAll('.plotly-graph-div')[{fig['index']}].getBoundingClientRect();
              return {{x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}}; }})()""")
            fig["shot"] = await _capture(dt, session, fig["rect"], folder / f"figure-{fig['index']:02d}.png")
            if not shot_problems(fig["shot"]):
                break
    pages = []
    for part in await _evaluate(dt, session, SECTIONS_JS):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", part["id"])
        pages.append({"id": part["id"], **await _capture(dt, session, part, folder / f"page-{name}.png")})
    return figures, pages


def open_page(path: Path, timeout: float = 90.0, shots: Path | None = None) -> dict:
    """Load ``path`` in a fresh headless chromium; return readiness, DOM summary, errors and requests.

    With ``shots`` (a folder): also a PNG per plotly figure and per page section there, and per
    figure the facts of :data:`FIGURES_JS` plus the pixel statistics of its PNG (``figures``, ``pages``).
    """
    # chromium helper processes may still write into the profile as it exits: never fail on its cleanup
    with tempfile.TemporaryDirectory(prefix="mi-chromium-", ignore_cleanup_errors=True) as profile:
        log = open(Path(profile) / "stderr.log", "wb")
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-default-apps", "--mute-audio", "--no-default-browser-check",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
             "--enable-unsafe-swiftshader", "--window-size=1280,900",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            start = time.monotonic()
            while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
                if proc.poll() is not None or time.monotonic() - start > 60:
                    raise RuntimeError("chromium did not start: " + (Path(profile) / "stderr.log").read_text()[-2000:])
                time.sleep(0.1)
            port, browser_path = port_file.read_text().split()[:2]
            ws_url = f"ws://127.0.0.1:{port}{browser_path}"
            return asyncio.run(_load(ws_url, path.resolve().as_uri(), timeout, shots))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _check_common(res: dict) -> dict:
    s = res["summary"]
    assert res["ready"], f"page did not finish rendering: {s and {k: v for k, v in s.items() if k != 'text'}}"
    assert not res["errors"], f"console errors: {res['errors'][:5]}"
    bad = [u for u in res["requests"] if not u.startswith(ALLOWED_SCHEMES)]
    assert not bad, f"requests to non-file URLs: {bad[:5]}"
    assert s["plotly_loaded"] and s["circuitsvis_loaded"]
    assert s["cv_containers"] >= 1 and s["cv_rendered"] == s["cv_containers"]
    assert s["plotly_divs"] >= 1 and s["plotly_rendered"] >= s["plotly_divs"]
    assert not s["pwned"] and not s["injected_h1"] and s["img_onerror"] == 0
    return s


@pytest.fixture(scope="module")
def chromium():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def hostile_model():
    """Toy GPT-2 with a planted massive activation (block 1, dim 5) so sink positions exist."""
    from mi_massive.core.loading import load_toy

    return load_toy("toy-gpt2", seed=0, plant=[(1, 5, 500.0)])


def test_attention_page_renders_offline_and_safely(chromium, hostile_model, tmp_path):
    from mi_massive.analyses.attention.run import attention_analysis, write_attention

    result = attention_analysis(hostile_model, HOSTILE, prepend_bos=True, layers=[1, 2])
    page, _ = write_attention(result, tmp_path)
    res = open_page(page, shots=_shots_dir(tmp_path, "attention"))
    s = _check_common(res)
    assert s["cv_containers"] == 2 and s["plotly_divs"] == 4  # share, value norms, 2 logit maps
    assert HOSTILE in s["text"]  # the whole hostile string is shown literally
    _check_shots(res, n_figures=4)


def test_report_page_renders_offline_and_safely(chromium, hostile_model, tmp_path):
    from mi_massive.report.run import build_report

    paths = build_report(hostile_model, HOSTILE, tmp_path, prepend_bos=True)
    res = open_page(paths["report"], shots=_shots_dir(tmp_path, "report"))
    s = _check_common(res)
    assert {"summary", "scan", "attention"} <= set(s["sections"])
    assert HOSTILE in s["text"]
    _check_shots(res, n_figures=s["plotly_divs"])
    shot_of = {p["id"]: p for p in res["pages"]}
    assert {"top", "summary", "scan", "attention"} <= set(shot_of)  # every section captured
    assert all(p["height"] > 30 for p in res["pages"])


def _shots_dir(tmp_path: Path, name: str) -> Path:
    """Where the PNGs go: ``$MI_MASSIVE_SCREENSHOTS/<name>`` when set (kept for a look by eye), else tmp."""
    keep = os.environ.get("MI_MASSIVE_SCREENSHOTS")
    return Path(keep) / name if keep else tmp_path / "shots" / name


def _check_shots(res: dict, *, n_figures: int) -> None:
    """Every figure captured and clean (:func:`figure_problems`), every page section not blank."""
    assert len(res["figures"]) == n_figures
    problems = [p for fig in res["figures"] for p in figure_problems(fig)]
    assert not problems, "\n".join(problems)
    blank = [f"{p['id']}: {shot_problems(p)}" for p in res["pages"] if shot_problems(p)]
    assert not blank, blank
    assert all(Path(fig["shot"]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for fig in res["figures"])


# ------------------------------------------------------------------------------------ screenshots
MIN_STD, MIN_INK, MIN_COLOURS = 8.0, 0.01, 4  # a blank or single-colour capture fails all three


def shot_problems(shot: dict) -> list[str]:
    """Why a PNG looks blank: luminance spread, share of non-white pixels and colour count too low."""
    bad = []
    if shot["std"] < MIN_STD:
        bad.append(f"pixel luminance std {shot['std']:.1f} < {MIN_STD}")
    if shot["ink"] < MIN_INK:
        bad.append(f"only {shot['ink']:.1%} non-white pixels")
    if shot["colours"] < MIN_COLOURS:
        bad.append(f"only {shot['colours']} colours")
    return bad


def figure_problems(fig: dict) -> list[str]:
    """Everything wrong with one rendered figure (facts from :data:`FIGURES_JS`), as readable lines."""
    bad = [f"blank: {b}" for b in shot_problems(fig["shot"])]
    bad += [f"axis {a['id']} has no title" for a in fig["axes"] if a["used"] and a["visible"] and not a["title"]]
    bad += [f"3-D axis {'xyz'[i]} has no title" for scene in fig["scenes"] for i, t in enumerate(scene) if not t]
    if fig["named"] >= 2 and fig["legend_items"] < 2:
        bad.append(f"{fig['named']} named traces but {fig['legend_items']} legend entries")
    bad += [f"overlap: {o}" for o in fig["overlaps"]]
    bad += [f"clipped text: {t!r}" for t in fig["clipped"]]
    bad += [f"bar trace {b['name']!r}: {b['nonzero']} non-zero values but no visible bar" for b in fig["bars"]
            if b["nonzero"] and not b["shown"]]
    if not fig["title"]:
        bad.append("no title")
    return [f"figure {fig['index']} ({fig['title'][:60]!r}): {b}" for b in bad]


def render_figures(figs: dict, folder: Path) -> Path:
    """One offline page with every figure of ``figs`` ({name: plotly figure}), each under an ``<h2>`` name."""
    from mi_massive.core import safe_html as sh
    from mi_massive.core.html import figure_fragment, plotlyjs_script
    from mi_massive.analyses.attention.figures import circuitsvis_bundle_script

    body = "\n".join(f'<section id="{sh.text(name)}"><h2>{sh.text(name)}</h2>\n{figure_fragment(fig)}</section>'
                     for name, fig in figs.items())
    page = folder / "figures.html"
    page.write_text(sh.html_page("figures", body, head_scripts=[plotlyjs_script(), circuitsvis_bundle_script()]),
                    encoding="utf-8")
    return page


if __name__ == "__main__":  # screenshot any page for a look by eye: python tests/report/test_browser_pages.py PAGE DIR
    result = open_page(Path(sys.argv[1]), shots=Path(sys.argv[2]))
    print("ready:", result["ready"], "errors:", result["errors"][:3])
    for fig in result["figures"]:
        print(fig["index"], fig["title"][:70], "->", fig["shot"]["png"], figure_problems(fig) or "ok")
    for part in result["pages"]:
        print(part["id"], part["png"], part["height"], shot_problems(part) or "ok")


def _records(model) -> dict:
    """A record of every analysis that has figures, made on the planted toy (small settings, seconds)."""
    import mi_massive as mm
    from mi_massive.analyses.intervene import intervene, split_corpus
    from mi_massive.analyses.mlp import mlp
    from mi_massive.analyses.svd import svd
    from mi_massive.analyses.tokens import tokens
    from mi_massive.analyses.variants.record import VariantComparison, VariantReport
    from mi_massive.core.corpus import builtin_corpus

    corpus = builtin_corpus(model, n_samples=4, seq_len=24, prepend_bos=True)
    scan = mm.scan(model, corpus, progress=False, hooks="resid_post,mlp_out")
    ev, cal = split_corpus(corpus, 2)
    reports = [VariantReport(name=name, spec={}, path=None, eval_loss=loss, eval_ppl=2.718 ** loss, train={},
                             top1_per_layer=top, median_per_layer=[0.5, 0.4, 0.4], n_massive=0, massive_dims=[],
                             massive_positions={}, max_top1=max(top), attn_first_token=[0.2, 0.6, 0.7],
                             attn_bias_slot=slot, seconds_eval=0.1)
               for name, loss, top, slot in (("baseline", 5.1, [3.0, 250.0, 900.0], []),
                                             ("kv_bias", 5.0, [3.0, 4.0, 5.0], [0.1, 0.5, 0.6]))]
    return {
        "scan": scan,
        "attention": mm.attention(model, "The cat sat on the mat. The dog ran.", prepend_bos=True, layers=[1]),
        "heads": mm.heads(model, corpus, progress=False),
        "attribute": mm.attribute(model, corpus, 1, 0, 5),
        "ablate": mm.ablate(model, corpus, mlps=[1], n_null=20, progress=False),
        "patch": mm.patch(model, "abcde", "abxde", metric="loss", components=["resid_pre", "head"], progress=False),
        "sweep": mm.sweep(model, corpus, [(1, 0, 5)], mlps=True, progress=False),
        "intervene": intervene(model, ev, cal, n_control=1, n_boot=50),
        "mlp": mlp(model, corpus),
        "svd": svd(model, corpus, n_boot=20),
        "tokens": tokens(model, corpus, n_boot=20),
        "variants": VariantComparison(provenance={"base": "toy-llama"}, reports=reports),
    }


def figure_kinds(model) -> dict:
    """Every figure the package draws, by name: each analysis' ``figures`` map (registry), the report views'
    figures, and the 3-D view. Fails when an analysis with figures has no record here."""
    from mi_massive.analyses.ablate.report import ablation_view, effects_figure
    from mi_massive.analyses.attribute.report import contributions_figure
    from mi_massive.analyses.heads.report import head_scores_figure
    from mi_massive.analyses.registry import ANALYSES
    from mi_massive.analyses.scan.figures import feature_3d_figure
    from mi_massive.analyses.scan.run import sentence_activations
    from mi_massive.core import safe_html as sh

    records = _records(model)
    missing = [a.name for a in ANALYSES if a.figures is not None and a.name not in records]
    assert not missing, f"no record to draw the figures of {missing}: add one to _records"
    figs = {}
    for analysis in ANALYSES:
        if analysis.figures is not None:
            for stem, fig in analysis.figures(records[analysis.name]).items():
                figs[f"{analysis.name}/{stem}"] = fig
    h, toks = sentence_activations(model, "The cat sat on the mat. The dog ran.", 1, prepend_bos=True)
    figs["scan/feature_3d"] = feature_3d_figure(h, [sh.display_token(t) for t in toks], layer=1, model_name="toy-llama")
    heads = records["heads"]
    figs["report/head_scores"] = head_scores_figure(heads.matrix("first"), title="mean attention to position 0")
    top = records["attribute"].top(8)
    figs["report/contributions"] = contributions_figure([c.label for c in top], [c.value for c in top],
                                                        title="who writes block 1, position 0, dim 5")
    figs["report/effects"] = effects_figure(["MLP 1 off: entry p0 d5 @ 1", "MLP 1 off: top1 @ 2"], [-2990.0, -2900.0],
                                            [-3000.0, -2950.0], [-2980.0, -2850.0], title="ablation effects",
                                            xaxis="ablated - baseline (95% bootstrap CI)")
    return figs


def test_every_figure_kind_renders_cleanly(chromium, tmp_path):
    """Each figure the package draws, on its own section of one page: screenshot, then the DOM checks."""
    from mi_massive.core.loading import load_toy

    figs = figure_kinds(load_toy("toy-llama", seed=0, plant=[(1, 5, 3000.0)]))
    assert len(figs) >= 20
    res = open_page(render_figures(figs, tmp_path), shots=_shots_dir(tmp_path, "figures"))
    assert res["ready"] and not res["errors"], res["errors"][:3]
    names = list(figs)
    for fig in res["figures"]:  # the name of each figure in the failure message
        fig["title"] = f"{names[fig['index']]}: {fig['title']}"
    _check_shots(res, n_figures=len(figs))
    by_name = {names[f["index"]]: f for f in res["figures"]}
    assert by_name["scan/feature_3d"]["webgl"] >= 1 and by_name["scan/feature_3d"]["scenes"] == [["token", "dim", "|h|"]]
    assert by_name["scan/layerwise"]["legend_items"] == 4  # top-1/2/3 and the median
    ticks = by_name["scan/layerwise"]["axes"]
    assert {a["id"]: a["title"] for a in ticks} == {"x": "layer (0-based; -1 = embeddings)", "y": "|h| (log scale)"}


def test_the_checks_catch_bad_figures(chromium, tmp_path):
    """The screenshot checks are not vacuous: a blank figure, missing axis titles, a legend over the data,
    overlapping subplot titles, clipped tick labels and invisible bars are each reported."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    blank = go.Figure(layout=dict(title="blank", xaxis=dict(visible=False), yaxis=dict(visible=False),
                                  template="none"))
    untitled = go.Figure([go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="a"), go.Scatter(x=[1, 2, 3], y=[1, 2, 3], name="b")],
                         layout=dict(title="untitled axes, legend inside", legend=dict(x=0.4, y=0.6)))
    crowded = make_subplots(rows=1, cols=3, subplot_titles=["a very long subplot title that runs on and on"] * 3)
    for i in range(3):
        crowded.add_trace(go.Scatter(y=[1, 2], showlegend=False), row=1, col=i + 1)
        crowded.update_xaxes(title_text="x", row=1, col=i + 1)
        crowded.update_yaxes(title_text="y", row=1, col=i + 1)
    crowded.update_layout(title="crowded", width=700)
    clipped = go.Figure(go.Bar(x=["a" * 60, "b"], y=[1.0, 2.0]), layout=dict(
        title="clipped", xaxis=dict(title="x", tickangle=-90, automargin=False), yaxis_title="y", margin=dict(b=5)))
    flat = go.Figure(go.Bar(x=["a", "b"], y=[1e-6, 2e-6]), layout=dict(title="flat bars", xaxis_title="x",
                                                                      yaxis=dict(title="y", range=[0, 1e3])))
    figs = {"blank": blank, "untitled": untitled, "crowded": crowded, "clipped": clipped, "flat": flat}
    res = open_page(render_figures(figs, tmp_path), shots=tmp_path / "bad")
    found = {list(figs)[f["index"]]: " | ".join(figure_problems(f)) for f in res["figures"]}
    assert "blank:" in found["blank"]
    assert "axis x has no title" in found["untitled"] and "axis y has no title" in found["untitled"]
    assert "overlap: legend / plot area" in found["untitled"]
    assert "overlap: subplot title" in found["crowded"]
    assert "clipped text" in found["clipped"]
    assert "no visible bar" in found["flat"]


def test_study_page_renders_offline_and_cleanly(chromium, tmp_path):
    """``study.html``: the cross-model table (a hostile model name shown literally) and the overlaid profiles."""
    from mi_massive.study.page import study_page
    from mi_massive.study.record import DepthProfile, HeadShare, ModelRow, StudyRecord, UnitState

    rows = [ModelRow(model=HOSTILE, folder="m", architecture="LlamaForCausalLM", n_params=134_515_008, n_layers=30,
                     prepend_bos=False, bos_source="auto", has_massive=True, first_layer=11, dims=[507, 247],
                     largest=24924.0, largest_ratio=14422.0, positions=[0], tokens=["n", " of"], ppl_zero=1.5e5,
                     ppl_zero_ci95=[8.8e4, 2.4e5], ppl_mean=0.992, ppl_mean_ci95=[0.981, 1.0],
                     top_heads=[HeadShare("L18H8", 0.998)], writer="MLP11", writer_share=0.99),
            ModelRow(model="toy", folder="toy", n_layers=3, has_massive=False, missing=["intervene"])]
    profiles = [DepthProfile(model=HOSTILE, relative_depth=[i / 29 for i in range(30)],
                             top1=[30.0] * 11 + [24000.0] * 19, median=[0.5 + i / 3 for i in range(30)]),
                DepthProfile(model="toy", relative_depth=[0.0, 0.5, 1.0], top1=[0.1, 0.12, 0.14],
                             median=[0.02, 0.021, 0.022])]
    record = StudyRecord(settings={"corpus": "builtin", "n_samples": 4, "seq_len": 64, "seed": 0, "dtype": "float32"},
                         models=rows, profiles=profiles,
                         units=[UnitState("m/scan", "done"), UnitState("toy/intervene", "failed", "killed: x")])
    page = tmp_path / "study.html"
    page.write_text(study_page(record), encoding="utf-8")
    res = open_page(page, shots=_shots_dir(tmp_path, "study"))
    s = res["summary"]
    assert res["ready"] and not res["errors"], res["errors"][:5]
    assert not [u for u in res["requests"] if not u.startswith(ALLOWED_SCHEMES)]
    assert s["plotly_divs"] == 1 and s["plotly_rendered"] >= 1
    assert not s["pwned"] and not s["injected_h1"] and s["img_onerror"] == 0
    # the largest |h|, 24924.0, written by core.html.fmt as on the report page
    assert HOSTILE in s["text"] and "killed: x" in s["text"] and "24900" in s["text"]
    _check_shots(res, n_figures=1)
