"""Figures of ``mi-massive intervene``: perplexity per condition and the regeneration profiles.

>>> import mi_massive as mm
>>> from mi_massive.analyses.intervene import intervene, split_corpus
>>> from mi_massive.core.corpus import builtin_corpus
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> ev, cal = split_corpus(builtin_corpus(model, n_samples=4, seq_len=16, prepend_bos=True), 2)
>>> sorted(figures(intervene(model, ev, cal, n_control=1, variants=("one",), n_boot=20)))
['intervene_ppl', 'intervene_regeneration']
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from mi_massive.core.html import fmt, integer_axis, log_axis


def _model_name(result) -> str:
    return result.provenance.get("model", {}).get("name", "model")


def ppl_figure(result) -> go.Figure:
    """Perplexity per condition with bootstrap 95% CIs over chunks (log y)."""
    rows = result.table
    fig = go.Figure(go.Bar(
        x=[r.condition for r in rows], y=[r.ppl for r in rows],
        error_y=dict(type="data", array=[r.ci95[1] - r.ppl for r in rows],
                     arrayminus=[r.ppl - r.ci95[0] for r in rows]),
    ))
    values = [v for v in [r.ppl for r in rows] + [v for r in rows for v in r.ci95] if v is not None and v > 0]
    # bars grow from the bottom of a log axis: start it a decade under the smallest value so every bar shows
    axis = log_axis(values + ([min(values) / 10] if values else []), title="perplexity (log scale; 95% CI over chunks)")
    if values:
        axis["range"] = [math.log10(min(values)) - 1, math.log10(max(values)) + 0.2]
    fig.update_traces(text=[fmt(r.ppl) for r in rows], textposition="inside", insidetextanchor="start")
    fig.update_layout(title=f"{_model_name(result)}: perplexity under interventions at block {result.first_layer} "
                            f"(dims {', '.join(map(str, result.dims))})", yaxis=axis,
                      xaxis_title="condition (edited layers)", template="plotly_white")
    return fig


def regeneration_figure(result) -> go.Figure:
    """Mean |h| at the massive entries per block: clean, after zeroing at one layer, and what each block
    computes when the value is zeroed at every layer (regeneration)."""
    layers = result.evaluation.regeneration_layers
    fig = go.Figure()
    values: list[float] = []
    show = {"original": "post", "zero (one layer)": "post", "zero (every layer)": "pre", "mean (every layer)": "pre"}
    for run in result.runs:
        if run.name in show:
            kind = show[run.name]
            for cls, prof in run.regeneration.items():
                values += list(getattr(prof, kind))
                fig.add_trace(go.Scatter(x=layers, y=getattr(prof, kind), mode="lines+markers",
                                         name=f"{run.name} [{cls}, {kind}-edit]"))
    fig.update_layout(title="regeneration: mean |h| at the massive entries per block",
                      xaxis=integer_axis(len(layers), title="block (0-based)"),
                      yaxis=log_axis(values, title="mean |h| (log scale)"), template="plotly_white",
                      legend=dict(title="run [positions, read]"))
    return fig


def figures(result) -> dict[str, go.Figure]:
    """{file stem: figure} of an :class:`~mi_massive.analyses.intervene.record.InterventionResult`."""
    return {"intervene_ppl": ppl_figure(result), "intervene_regeneration": regeneration_figure(result)}
