"""How many parameters a model spec has, without loading its weights: :func:`mi_massive.core.sizes.estimate_params`
(it lives in ``core``, where the sharded ``sweep`` / ``patch`` size their units too; kept importable here).

>>> from mi_massive.study.sizes import estimate_params
>>> round(estimate_params("random:llama-2-7b") / 1e9, 2)
6.74
"""

from __future__ import annotations

from mi_massive.core.sizes import estimate_params

__all__ = ["estimate_params"]
