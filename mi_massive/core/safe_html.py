"""Escaping helpers for HTML we write ourselves: text in markup, JSON in scripts, inlined JS bundles.

Token strings come from user text, so anything that reaches a page must be inert:

* text in markup (headings, table cells, attributes) goes through :func:`text` (``html.escape``,
  quotes included);
* data in an inline ``<script>`` goes through :func:`script_json`, which escapes ``<``, ``>`` and ``&``
  as ``\\u003c`` etc. so neither ``</script>`` nor ``<!--`` can appear in the script element;
* props produced by another library (circuitsvis' ``json.dumps``) go through :func:`escape_script_props`;
* whole third-party bundles go through :func:`inline_js`, which neutralises ``</script`` / ``<!--``
  and drops source-map comments (a source map would be fetched by devtools).

Labels in plotly figures are not HTML but plotly's own mini-markup (``<b>``, ``<br>``, entities), so
token strings shown as tick labels go through :func:`plotly_label`.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)
_SOURCE_MAP = re.compile(r"^\s*//[#@]\s*source(Mapping)?URL=.*$", re.MULTILINE)
_UNSAFE_IN_SCRIPT = re.compile(r"</script|<!--", re.IGNORECASE)


def text(value: Any) -> str:
    """``value`` as HTML text or attribute content: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(value), quote=True)


def script_json(obj: Any) -> str:
    """JSON for an inline ``<script>``: a JS expression whose text contains no ``<``, ``>`` or ``&``.

    ``ensure_ascii`` also escapes U+2028/U+2029. NaN/inf are refused (they are not JSON).
    """
    raw = json.dumps(obj, ensure_ascii=True, allow_nan=False)
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def escape_script_props(props: str) -> str:
    """Make JSON text that another library built safe inside a ``<script>`` element.

    In JSON ``<`` and ``>`` can only occur inside strings, where ``\\u003c``/``\\u003e`` mean the same
    characters, so this never changes the value; it removes every ``</script>`` and ``<!--``.
    """
    return props.replace("<", "\\u003c").replace(">", "\\u003e")


def inline_js(source: str) -> str:
    """A JS bundle ready to inline: ``</script`` -> ``<\\/script``, ``<!--`` -> ``<\\!--``, no source maps.

    Both replacements are only valid inside string/regex literals, which is where bundles carry
    them (e.g. React's ``"<script></script>"``). :func:`check_script_body` verifies the result.
    """
    out = _SCRIPT_END.sub(r"<\\/\1", source).replace("<!--", "<\\!--")
    return _SOURCE_MAP.sub("", out)


def check_script_body(body: str) -> str:
    """Return ``body`` if it cannot end or comment-escape its ``<script>`` element; raise otherwise."""
    match = _UNSAFE_IN_SCRIPT.search(body)
    if match:
        start = max(0, match.start() - 40)
        raise ValueError(f"unsafe sequence {match.group()!r} in inline script near {body[start:match.end() + 40]!r}")
    return body


def script(body: str, *, module: bool = False) -> str:
    """An inline ``<script>`` element around a checked body."""
    kind = ' type="module"' if module else ""
    return f"<script{kind}>\n{check_script_body(body)}\n</script>"


def display_token(token: str) -> str:
    """A token string made visible: newlines/tabs/carriage returns shown as ``\\n``/``\\t``/``\\r``."""
    return token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def plotly_label(token: str) -> str:
    """A token string for a plotly label: visible whitespace and entities so plotly shows it literally."""
    return html.escape(display_token(token), quote=False)


def token_labels(tokens: list[str]) -> list[str]:
    """``"pos:token"`` plotly labels (positions keep repeated tokens apart)."""
    return [plotly_label(f"{i}:{t}") for i, t in enumerate(tokens)]


# No request of any kind leaves the page: everything is inline (scripts, styles) or data:/blob: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
                           "img-src data: blob:; font-src data:; worker-src blob:; connect-src 'none'; "
                           "base-uri 'none'; form-action 'none'")

PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: left; }
th { background: #f4f4f4; } .scroll { overflow-x: auto; } .muted { color: #777; }
table.tokens td { text-align: center; white-space: pre; } table.tokens .pos { display: block; font-size: .7em; color: #888; }
table.tokens td.massive { background: #fde0dd; } .summary li { margin: .25em 0; }
nav ul { columns: 2; } code { background: #f6f6f6; padding: 0 .2em; }
td { font-variant-numeric: tabular-nums; } details { margin: .3em 0 .8em; }
details > summary { cursor: pointer; color: #1a5fb4; } h4 { margin: 1em 0 .3em; }
"""


def html_page(title: str, body: str, *, head_scripts: list[str] = ()) -> str:
    """A complete UTF-8 HTML document with a strict no-network Content-Security-Policy.

    ``title`` is escaped here; ``body`` and ``head_scripts`` must already be safe HTML (built with
    this module's helpers).
    """
    scripts = "\n".join(head_scripts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{text(CONTENT_SECURITY_POLICY)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{text(title)}</title>\n<style>{PAGE_CSS}</style>\n{scripts}\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
