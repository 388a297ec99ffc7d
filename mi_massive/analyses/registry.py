"""The one list of analyses: the CLI, the report and the notebooks loop over :data:`ANALYSES`.

>>> from mi_massive.analyses.registry import get
>>> get("heads").commands["heads"].__name__
'heads_command'

Adding an analysis is adding a folder under ``mi_massive/analyses/`` whose ``__init__.py`` defines
``ANALYSIS`` (see :class:`mi_massive.core.analysis.Analysis`) and one line below.
"""

from __future__ import annotations

from mi_massive.analyses import (ablate, attention, attribute, heads, intervene, mlp, patch, scan, svd, sweep,
                                 tokens, variants)
from mi_massive.core.analysis import Analysis
from mi_massive.errors import MiMassiveError

ANALYSES: tuple[Analysis, ...] = (
    scan.ANALYSIS,
    attention.ANALYSIS,
    heads.ANALYSIS,
    attribute.ANALYSIS,
    ablate.ANALYSIS,
    patch.ANALYSIS,
    sweep.ANALYSIS,
    intervene.ANALYSIS,
    mlp.ANALYSIS,
    svd.ANALYSIS,
    tokens.ANALYSIS,
    variants.ANALYSIS,
)


def get(name: str) -> Analysis:
    """The analysis called ``name`` (its folder name)."""
    for analysis in ANALYSES:
        if analysis.name == name:
            return analysis
    raise MiMassiveError(f"unknown analysis '{name}'; known: {', '.join(a.name for a in ANALYSES)}")
