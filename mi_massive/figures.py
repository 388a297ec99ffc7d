"""Every analysis' figures in one namespace: ``mm.figures.layerwise_figure(result)``, ``mm.figures.ppl_figure(iv)``, ...

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> result = mm.scan(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)
>>> fig = mm.figures.layerwise_figure(result)   # plotly Figure: top-k |h| per layer (residual units)
>>> type(fig).__name__
'Figure'

Each analysis folder keeps its figures in ``mi_massive/analyses/<name>/figures.py`` (plotly figures
returned as objects, circuitsvis HTML as strings). This module re-exports, for every analysis of
:data:`mi_massive.analyses.registry.ANALYSES`, the public functions of the module that defines its
``Analysis.figures`` map (the map itself excepted) and the ``*_figure`` functions of the module of its
report view. Modules are found from the registry's own function objects (no import strings), so a
new analysis' figures appear here without an edit. :data:`SOURCES` says where each name comes from.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable

from mi_massive.analyses.registry import ANALYSES


def _defined_in(module: ModuleType, keep: Callable[[str], bool]) -> dict[str, Callable]:
    """Public functions defined in ``module`` itself (not imported into it) whose name passes ``keep``."""
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__
            and not isinstance(obj, type) and keep(name)}


def _modules(analysis) -> list[tuple[ModuleType, Callable[[str], bool]]]:
    """The analysis' figures module (where its ``figures`` map is defined) and its report view's module."""
    found = []
    if analysis.figures is not None:
        found.append((sys.modules[analysis.figures.__module__], lambda name: name != "figures"))
    if analysis.report is not None:
        found.append((sys.modules[analysis.report.view.__module__], lambda name: name.endswith("_figure")))
    return found


SOURCES: dict[str, str] = {}
"""Figure function name -> the module that defines it."""
CLASHES: list[str] = []
"""Names defined by two analyses (only the first is exported)."""

for _analysis in ANALYSES:
    for _module, _keep in _modules(_analysis):
        for _name, _func in _defined_in(_module, _keep).items():
            if _name in SOURCES:  # the first analysis keeps the name (tests/test_layout.py flags clashes)
                CLASHES.append(f"{_name}: {SOURCES[_name]} and {_module.__name__}")
                continue
            SOURCES[_name] = _module.__name__
            globals()[_name] = _func

__all__ = sorted(SOURCES)
