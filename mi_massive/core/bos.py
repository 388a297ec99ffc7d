"""BOS as the model's tokenizer does it: resolve ``prepend_bos="auto"`` (the default everywhere).

>>> import mi_massive as mm
>>> choice = resolve_bos(mm.load_toy("toy-gpt2"), "auto")
>>> choice.prepend_bos, choice.source, choice.tokenizer_adds_bos
(False, 'auto', False)

Llama-2, Gemma and Mistral tokenizers put BOS at position 0 of every text (``tokenizer("x")["input_ids"]``
starts with ``bos_token_id``); GPT-2 and SmolLM2 tokenizers do not, and neither does the toy byte
tokenizer. ``"auto"`` follows the tokenizer as its author shipped it. A TransformerLens bridge rebuilds
its tokenizer with ``add_bos_token=True`` (so ``bridge.tokenizer`` always adds BOS), hence the shipped
tokenizer is reloaded from ``name_or_path`` (local files only) and cached on the bridge; when that fails
the bridge's ``cfg.default_prepend_bos`` decides and the choice says so. ``cfg.default_prepend_bos``
(TransformerLens' own default, True for nearly every model) is recorded beside it as a cross-check.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from mi_massive.errors import MiMassiveError

AUTO = "auto"
_CACHE_ATTR = "mi_massive_native_adds_bos"


class BosWarning(UserWarning):
    """A run that goes against the tokenizer's own BOS convention (one line)."""


@dataclass(frozen=True)
class BosChoice:
    """What was decided: ``prepend_bos`` (bool), ``source`` ("auto" or "user"), what the tokenizer does
    (``tokenizer_adds_bos``: None when unknown), TransformerLens' ``cfg.default_prepend_bos`` (None for a bare
    tokenizer) and ``basis`` (how the auto value was found)."""

    prepend_bos: bool
    source: str
    tokenizer_adds_bos: bool | None
    tl_default_prepend_bos: bool | None
    basis: str

    @property
    def against_convention(self) -> bool:
        """True when the run prepends BOS and the tokenizer does not, or the reverse."""
        return self.tokenizer_adds_bos is not None and self.prepend_bos != self.tokenizer_adds_bos

    def line(self) -> str:
        """One line for stderr, e.g. ``BOS: not prepended (auto: the tokenizer adds none)``."""
        what = "prepended" if self.prepend_bos else "not prepended"
        return f"BOS: {what} ({self.source}: {self.basis})"

    def warning(self) -> str | None:
        """The one-line warning of a run against the tokenizer's convention (None otherwise)."""
        if not self.against_convention:
            return None
        does = "adds BOS to every text" if self.tokenizer_adds_bos else "adds no BOS"
        return (f"BOS is {'prepended' if self.prepend_bos else 'not prepended'} but the model's tokenizer {does}; "
                f"position 0 differs from what the model saw in training")


def tokenizer_adds_bos(tokenizer: Any) -> bool | None:
    """Whether ``tokenizer("x")["input_ids"]`` starts with its ``bos_token_id`` (None: it has no BOS token).

    >>> import mi_massive as mm
    >>> tokenizer_adds_bos(mm.toy_tokenizer())
    False
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    ids = list(tokenizer("x")["input_ids"])
    return bool(ids) and ids[0] == bos


def _native_adds_bos(model: Any) -> tuple[bool | None, str]:
    """(does the shipped tokenizer add BOS, how we know) for a bridge; cached on the bridge."""
    cached = getattr(model, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    tok = model.tokenizer
    found: tuple[bool | None, str]
    path = getattr(tok, "name_or_path", None)
    try:
        from transformers import AutoTokenizer

        native = AutoTokenizer.from_pretrained(path, local_files_only=True)
        adds = tokenizer_adds_bos(native)
        found = (adds, "the tokenizer adds BOS" if adds else "the tokenizer adds none")
    except Exception:  # no reloadable tokenizer (e.g. GGUF): TransformerLens' default decides
        found = (None, "tokenizer convention unknown, cfg.default_prepend_bos")
    try:
        setattr(model, _CACHE_ATTR, found)
    except Exception:
        pass
    return found


def resolve_bos(model_or_tokenizer: Any, prepend_bos: bool | str | None = AUTO) -> BosChoice:
    """Resolve ``prepend_bos`` (True, False, ``"auto"`` or None = auto) for a bridge or a tokenizer.

    >>> import mi_massive as mm
    >>> c = resolve_bos(mm.load_toy("toy-llama"), True)
    >>> c.prepend_bos, c.source, c.against_convention
    (True, 'user', True)
    """
    if prepend_bos is not None and not isinstance(prepend_bos, bool) and prepend_bos != AUTO:
        raise MiMassiveError(f"prepend_bos must be True, False or 'auto', got {prepend_bos!r}")
    cfg = getattr(model_or_tokenizer, "cfg", None)
    tl_default = getattr(cfg, "default_prepend_bos", None) if cfg is not None else None
    tl_default = None if tl_default is None else bool(tl_default)
    if cfg is not None and hasattr(model_or_tokenizer, "tokenizer"):
        adds, basis = _native_adds_bos(model_or_tokenizer)
    else:
        tok = getattr(model_or_tokenizer, "tokenizer", None) or model_or_tokenizer
        adds = tokenizer_adds_bos(tok)
        basis = "the tokenizer adds BOS" if adds else "the tokenizer adds none"
    if isinstance(prepend_bos, bool):
        told = "set explicitly" + ("" if adds is None else f"; {basis}")
        return BosChoice(prepend_bos, "user", adds, tl_default, told)
    if adds is None:
        value = bool(tl_default) if tl_default is not None else False
        if tl_default is None:
            basis = "the tokenizer has no BOS token"
    else:
        value = adds
    if tl_default is not None and tl_default != value:
        basis += f"; TransformerLens cfg.default_prepend_bos={tl_default} not followed"
    return BosChoice(value, "auto", adds, tl_default, basis)


def resolve_and_warn(model_or_tokenizer: Any, prepend_bos: bool | str | None) -> BosChoice:
    """:func:`resolve_bos`, plus a :class:`BosWarning` when the run goes against the tokenizer's convention."""
    choice = resolve_bos(model_or_tokenizer, prepend_bos)
    if (msg := choice.warning()) is not None:
        warnings.warn(msg, BosWarning, stacklevel=3)
    return choice
