"""Figure of ``mi-massive tokens``: the four per-word-type metrics, function vs content words.

>>> import mi_massive as mm
>>> from mi_massive.analyses.tokens import tokens
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> r = tokens(model, mm.text_corpus(model, "The cat sat.", prepend_bos=True), n_boot=10)
>>> sorted(figures(r))
['tokens_words']
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def word_metric_figure(result) -> go.Figure:
    """Box plots of the four per-word-type metrics, function vs content words; a panel without any word type
    (too short a corpus, or a tokenizer without words, as on the toys) says so in its middle."""
    per_word = result.words.per_word
    metrics = result.words.metric_names
    fig = make_subplots(rows=1, cols=max(1, len(metrics)), subplot_titles=metrics, horizontal_spacing=0.07)
    colours = {"function": "#4c72b0", "content": "#dd8452"}
    need = result.words.occurrences_per_type
    for i, m in enumerate(metrics):
        n_points = 0
        for group in ("function", "content"):
            vals = [getattr(w, m) for w in per_word if w.group == group and getattr(w, m) is not None]
            n_points += len(vals)
            fig.add_trace(go.Box(y=vals, name=f"{group} words", legendgroup=group, showlegend=i == 0,
                                 marker_color=colours[group]), row=1, col=i + 1)
        if not n_points:  # say why the panel is bare instead of drawing empty axes
            fig.add_annotation(text=f"no word type here:<br>each needs {need} occurrences<br>"
                                    "(a longer corpus or --occurrences)",
                               showarrow=False, xref=f"x{i + 1 if i else ''} domain",
                               yref=f"y{i + 1 if i else ''} domain", x=0.5, y=0.5, font=dict(color="#666"))
        fig.update_xaxes(title_text="word type", row=1, col=i + 1)
        fig.update_yaxes(title_text=m, row=1, col=i + 1)
    fig.update_layout(title=f"block {result.layer}: function vs content word types (one point per word type)",
                      template="plotly_white", margin=dict(t=110))
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of a :class:`~mi_massive.analyses.tokens.record.TokensResult` (what the command writes)."""
    return {"tokens_words": word_metric_figure(result)}
