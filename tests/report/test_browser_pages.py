"""Open attention.html and report.html in headless Debian chromium and check they really rendered.

The browser is driven over the DevTools protocol (127.0.0.1 websocket, tornado's client, which the
dev extras already pull in through ipykernel). Every request is intercepted (``Fetch``): file:// is
allowed, anything else is recorded and failed, and the network is also switched off three other ways
(offline emulation, an unreachable proxy, a host resolver that resolves nothing). Checked per page:
circuitsvis and plotly elements exist after the scripts ran, no console error or uncaught
exception, no request to a non-file URL, and the hostile text is shown as text with no injected
element or script run.

Skips with the reason when chromium is missing (``bash scripts/install_chromium.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
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


async def _load(ws_url: str, url: str, timeout: float) -> dict:
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
    return {"ready": ready, "summary": summary, "errors": errors, "requests": requests}


def open_page(path: Path, timeout: float = 90.0) -> dict:
    """Load ``path`` in a fresh headless chromium; return readiness, DOM summary, errors and requests."""
    with tempfile.TemporaryDirectory(prefix="mi-chromium-") as profile:
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
            return asyncio.run(_load(ws_url, path.resolve().as_uri(), timeout))
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
    s = _check_common(open_page(page))
    assert s["cv_containers"] == 2 and s["plotly_divs"] == 4  # share, value norms, 2 logit maps
    assert HOSTILE in s["text"]  # the whole hostile string is shown literally


def test_report_page_renders_offline_and_safely(chromium, hostile_model, tmp_path):
    from mi_massive.report.run import build_report

    paths = build_report(hostile_model, HOSTILE, tmp_path, prepend_bos=True)
    s = _check_common(open_page(paths["report"]))
    assert {"summary", "scan", "attention"} <= set(s["sections"])
    assert HOSTILE in s["text"]
