"""Every analysis' figures in one namespace: ``mm.figures.layerwise_figure(result)``, ``mm.figures.ppl_figure(iv)``, ...

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> result = mm.scan(model, mm.text_corpus(model, "The cat sat on the mat.", prepend_bos=True), progress=False)
>>> fig = mm.figures.layerwise_figure(result)   # plotly Figure: top-k |h| per layer (residual units)
>>> type(fig).__name__
'Figure'

Each analysis folder keeps its figures in ``mi_massive/analyses/<name>/figures.py`` (plotly figures
returned as objects, circuitsvis HTML as strings). This module re-exports every public function
defined there (except ``figures``, the record -> {file stem: figure} map that
:class:`~mi_massive.core.analysis.Analysis` ``.figures`` points to), plus the ``*_figure`` functions of its ``report.py`` (the report's views), for every
analysis of :data:`mi_massive.analyses.registry.ANALYSES`: a new analysis' figures appear here
without an edit. :data:`SOURCES` says where each name comes from.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

from mi_massive.analyses.registry import ANALYSES


def _defined_in(module: ModuleType, keep: Callable[[str], bool]) -> dict[str, Callable]:
    """Public functions defined in ``module`` itself (not imported into it) whose name passes ``keep``."""
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__
            and not isinstance(obj, type) and keep(name)}


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:  # the analysis has no such module
            return None
        raise


SOURCES: dict[str, str] = {}
"""Figure function name -> the module that defines it."""
CLASHES: list[str] = []
"""Names defined by two analyses (only the first is exported)."""

for _analysis in ANALYSES:
    for _suffix, _keep in (("figures", lambda name: name != "figures"), ("report", lambda name: name.endswith("_figure"))):
        _module = _optional_module(f"mi_massive.analyses.{_analysis.name}.{_suffix}")
        if _module is None:
            continue
        for _name, _func in _defined_in(_module, _keep).items():
            if _name in SOURCES:  # the first analysis keeps the name (tests/test_layout.py flags clashes)
                CLASHES.append(f"{_name}: {SOURCES[_name]} and {_module.__name__}")
                continue
            SOURCES[_name] = _module.__name__
            globals()[_name] = _func

__all__ = sorted(SOURCES)
