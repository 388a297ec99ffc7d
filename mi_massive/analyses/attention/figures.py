"""Attention-sink views: circuitsvis head patterns and the companion figures of Sun et al. §1.6 / Owen §2.7.

Pure functions from tensors (or an :class:`~mi_massive.analyses.attention.record.AttentionResult`) to HTML
fragments / plotly figures; nothing here runs a model.

* :func:`attention_heads_html` - circuitsvis ``AttentionHeads`` for one layer (probabilities, [head, q, k]);
* :func:`attention_logits_figure` - head-mean pre-softmax logits of one layer (queries x keys, upper
  triangle masked), massive key positions marked;
* :func:`value_norms_figure` - ||v_t|| per layer and position (mean over KV heads);
* :func:`sink_share_figure` - per layer and head, the share of attention paid to the massive positions;
* :func:`attention_page` - all of the above as one offline HTML page.

Offline: the circuitsvis bundle is taken from ``RenderedHTML.local_src`` (never the CDN), inlined
once per page (:func:`circuitsvis_bundle_script`) and each view only adds its ``CircuitsVis.render``
call, with its props escaped (:func:`~mi_massive.core.safe_html.escape_script_props`).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Sequence

import plotly.graph_objects as go
import torch
from jaxtyping import Float

from mi_massive.core import safe_html as sh
from mi_massive.core.html import figure_fragment, integer_axis, plotlyjs_script  # noqa: F401 (re-exported for pages)

if TYPE_CHECKING:
    from mi_massive.analyses.attention.record import AttentionResult

PROB_DECIMALS = 4  # attention probabilities are rounded to this many decimals in the page (keeps it small)
MASSIVE_COLOR = "#d62728"
# the "massive position" legend sits above the plot, right-aligned, clear of the colour bar on the right
LEGEND_ABOVE = dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom")
_RENDER_CALL = "CircuitsVis.render("
_ID_ARG = re.compile(r'CircuitsVis\.render\(\s*"[^"]*"')


def _split_local_src(src: str) -> tuple[str, str]:
    """(bundle JS, ``CircuitsVis.render(...)`` call) of a circuitsvis ``local_src`` string."""
    start = src.find("<script")
    body_start = src.find(">", start) + 1
    call_start = src.rfind(_RENDER_CALL)
    end = src.rfind("</script>")
    if start < 0 or call_start < body_start or end < call_start:
        raise ValueError("unexpected circuitsvis local_src layout")
    return src[body_start:call_start], src[call_start:end]


def _local_src(pattern: torch.Tensor, tokens: Sequence[str], head_names: Sequence[str] | None) -> str:
    import circuitsvis as cv

    probs = pattern.detach().double().cpu().round(decimals=PROB_DECIMALS)
    return cv.attention.attention_heads(attention=probs, tokens=list(tokens),
                                        attention_head_names=list(head_names) if head_names else None).local_src


@functools.lru_cache(maxsize=1)
def _bundle() -> str:
    bundle, _ = _split_local_src(_local_src(torch.ones(1, 1, 1), ["x"], None))
    return sh.inline_js(bundle)


def circuitsvis_bundle_script() -> str:
    """A ``<script>`` defining the global ``CircuitsVis`` (the 1.3 MB bundle from ``local_src``); once per page."""
    return sh.script(_bundle())


def attention_heads_html(pattern: Float[torch.Tensor, "head q k"], tokens: Sequence[str], *,
                         element_id: str, head_names: Sequence[str] | None = None) -> str:
    """circuitsvis ``AttentionHeads`` of one layer: a container div plus its render call (no bundle).

    ``pattern`` holds probabilities (rows sum to 1 over keys k <= q). ``tokens`` are shown as text:
    the props are JSON with ``<``/``>`` escaped, so a token like ``</script>`` cannot end the script.
    Needs :func:`circuitsvis_bundle_script` earlier on the page.
    """
    if pattern.ndim != 3 or pattern.shape[1] != len(tokens) or pattern.shape[2] != len(tokens):
        raise ValueError(f"pattern must be [head, {len(tokens)}, {len(tokens)}], got {tuple(pattern.shape)}")
    if not re.fullmatch(r"[A-Za-z][\w-]*", element_id):
        raise ValueError(f"bad element id {element_id!r}")
    _, call = _split_local_src(_local_src(pattern, tokens, head_names))
    call = _ID_ARG.sub(f'CircuitsVis.render("{element_id}"', call, count=1)
    return (f'<div id="{element_id}" class="cv-attention"></div>\n'
            + sh.script(sh.escape_script_props(call)))


def _axis_ticks(tokens: Sequence[str], max_ticks: int = 50) -> dict:
    step = max(1, -(-len(tokens) // max_ticks))
    vals = list(range(0, len(tokens), step))
    labels = sh.token_labels(list(tokens))
    return dict(tickmode="array", tickvals=vals, ticktext=[labels[i] for i in vals])


def _mark_keys(fig: go.Figure, positions: Sequence[int], n_rows: float, *, name: str = "massive position") -> None:
    """Red markers above the plot at the massive key positions (Owen: massive key labels in red)."""
    if positions:
        fig.add_trace(go.Scatter(x=list(positions), y=[n_rows] * len(positions), mode="markers", name=name,
                                 marker=dict(color=MASSIVE_COLOR, symbol="triangle-down", size=10),
                                 hovertemplate="massive key position %{x}<extra></extra>"))


def attention_logits_figure(scores: Float[torch.Tensor, "q k"], tokens: Sequence[str], *, layer: int,
                            massive_positions: Sequence[int] = (), model_name: str = "model") -> go.Figure:
    """Heatmap of the head-mean pre-softmax attention logits (q.k/sqrt(d_head)) of one layer (Sun et al. §1.6).

    Rows are queries, columns keys; entries with k > q (masked) are left blank. Massive key positions
    are marked in red above the map.
    """
    s = scores.detach().double().cpu().clone()
    q, k = s.shape
    s[torch.triu(torch.ones(q, k, dtype=torch.bool), diagonal=1)] = float("nan")
    z = [[None if v != v else round(v, 4) for v in row] for row in s.tolist()]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(k)), y=list(range(q)), colorscale="YlGnBu",
                               colorbar=dict(title="logit"), hoverongaps=False,
                               hovertemplate="query %{y}, key %{x}: %{z:.3f}<extra></extra>"))
    _mark_keys(fig, massive_positions, q - 0.5 + max(1.0, q / 40))
    fig.update_layout(title=f"{model_name}, block {layer}: pre-softmax attention logits (mean over heads)",
                      xaxis=dict(title="key", **_axis_ticks(tokens)),
                      yaxis=dict(title="query", autorange="reversed", **_axis_ticks(tokens, max_ticks=25)),
                      template="plotly_white", height=600, showlegend=bool(massive_positions), legend=LEGEND_ABOVE,
                      margin=dict(t=100))
    return fig


def value_norms_figure(norms: Float[torch.Tensor, "layer pos"], tokens: Sequence[str], *, layers: Sequence[int],
                       massive_positions: Sequence[int] = (), model_name: str = "model") -> go.Figure:
    """Heatmap of the value-vector norm ||v_t|| (``attn.hook_v``, mean over KV heads) per layer and position.

    Sun et al. / Owen: massive tokens receive most attention but carry small value vectors, so
    attending to them is close to a no-op.
    """
    z = norms.detach().double().cpu().round(decimals=4).tolist()
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(tokens))), y=list(layers), colorscale="Viridis",
                               colorbar=dict(title="||v||"),
                               hovertemplate="block %{y}, position %{x}: %{z:.3f}<extra></extra>"))
    _mark_keys(fig, massive_positions, max(layers) + 0.5 + max(1.0, len(layers) / 30))
    fig.update_layout(title=f"{model_name}: value-vector norm per position (mean over KV heads)",
                      xaxis=dict(title="position", **_axis_ticks(tokens)),
                      yaxis=integer_axis(len(layers), title="block (0-based)"),
                      template="plotly_white", height=550, showlegend=bool(massive_positions), legend=LEGEND_ABOVE,
                      margin=dict(t=100))
    return fig


def sink_share_figure(share: Float[torch.Tensor, "layer head"], *, layers: Sequence[int], target: str,
                      model_name: str = "model") -> go.Figure:
    """Heatmap (block x head) of the mean over queries q >= 1 of the attention mass on ``target`` positions."""
    z = share.detach().double().cpu().round(decimals=4).tolist()
    fig = go.Figure(go.Heatmap(z=z, x=list(range(share.shape[1])), y=list(layers), zmin=0, zmax=1,
                               colorscale="Reds", colorbar=dict(title="share"),
                               hovertemplate="block %{y}, head %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"{model_name}: share of attention to {sh.plotly_label(target)} (mean over queries q >= 1)",
                      xaxis=dict(title="head", dtick=1), yaxis=integer_axis(len(layers), title="block (0-based)"),
                      template="plotly_white",
                      height=550)
    return fig



def figures(result: "AttentionResult") -> dict[str, go.Figure]:
    """The plotly figures of an attention record, by file stem: ``sink_share`` (block x head),
    ``value_norms`` (block x position) and ``attention_logits_L{L}`` per shown block.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> sorted(figures(mm.attention(model, "The cat sat.", prepend_bos=True, layers=[1])))
    ['attention_logits_L1', 'sink_share', 'value_norms']

    The command writes them together, with the circuitsvis patterns, as one offline page
    (:func:`attention_page`).
    """
    name = result.model_name
    out = {"sink_share": sink_share_figure(result.sink_share, layers=result.all_layers, target=result.sink_label,
                                           model_name=name),
           "value_norms": value_norms_figure(result.value_norms, result.str_tokens, layers=result.all_layers,
                                             massive_positions=result.massive_positions, model_name=name)}
    for layer in result.layers:
        out[f"attention_logits_L{layer}"] = attention_logits_figure(
            result.logits_mean[layer], result.str_tokens, layer=layer, massive_positions=result.massive_positions,
            model_name=name)
    return out


def token_table_html(tokens: Sequence[str], massive_positions: Sequence[int] = ()) -> str:
    """The tokens of the text as an HTML table row (escaped; massive positions highlighted)."""
    marked = set(massive_positions)
    cells = "".join(
        f'<td class="{"massive" if i in marked else ""}"><span class="pos">{i}</span>'
        f'<code>{sh.text(sh.display_token(t))}</code></td>' for i, t in enumerate(tokens))
    return f'<div class="scroll"><table class="tokens"><tr>{cells}</tr></table></div>'


def attention_sections(result: "AttentionResult", *, id_prefix: str = "attn") -> str:
    """The body HTML of the attention views (no bundles): tokens, per-layer circuitsvis + logits, norms, shares."""
    figs = figures(result)
    parts = [f'<p class="text">Text: <code>{sh.text(result.text)}</code></p>', f"<p>{sh.text(result.describe())}</p>",
             token_table_html(result.str_tokens, result.massive_positions)]
    parts.append("<h3>Share of attention to the sink positions</h3>")
    parts.append(figure_fragment(figs["sink_share"]))
    parts.append("<h3>Value-vector norms</h3>")
    parts.append(figure_fragment(figs["value_norms"]))
    for layer in result.layers:
        heads = result.heads
        parts.append(f"<h3>Block {layer}: attention patterns (heads {sh.text(', '.join(map(str, heads)))})</h3>")
        parts.append(attention_heads_html(result.patterns[layer], result.str_tokens,
                                          element_id=f"{id_prefix}-cv-{layer}",
                                          head_names=[f"L{layer}H{h}" for h in heads]))
        parts.append(figure_fragment(figs[f"attention_logits_L{layer}"]))
    return "\n".join(parts)


def attention_page(result: "AttentionResult") -> str:
    """The whole offline ``attention.html``: bundles inlined once, every view below a short header."""
    body = attention_sections(result)
    title = f"Attention sinks: {result.model_name}"
    return sh.html_page(title, f"<h1>{sh.text(title)}</h1>\n{body}",
                        head_scripts=[plotlyjs_script(), circuitsvis_bundle_script()])
