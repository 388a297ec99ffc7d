"""The hook type shared by hook factories and the engine (no forward passes here).

>>> from mi_massive.core.hooks.types import Hook
>>> hook: Hook = ("blocks.0.hook_resid_post", lambda x, hook=None: x)

A hook is a TransformerLens ``(hook name or name filter, fn)`` pair; ``fn(tensor, hook)`` returns the
(possibly edited) tensor. Lists of hooks compose with ``+``.
"""

from __future__ import annotations

from typing import Any, Callable

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]
