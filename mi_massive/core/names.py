"""Hook names and position classes: the one place where ``blocks.L...`` strings are built.

>>> act_name("resid_post", 11)
'blocks.11.hook_resid_post'
>>> act_name("z", 3), act_name("pattern", 0), act_name("post", 2)
('blocks.3.attn.hook_z', 'blocks.0.attn.hook_pattern', 'blocks.2.mlp.hook_post')
>>> resid_names(2)
['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
>>> hook_layer("blocks.0.hook_resid_pre"), hook_layer("blocks.7.hook_resid_post")
((-1, 'embed'), (7, 'block 7'))
>>> position_class(0), position_class(5)
('start', 'other')

Names follow TransformerLens' ``utils.get_act_name``: a short kind (``resid_post``, ``z``,
``pattern``, ...) plus a 0-based block index gives the full hook name of the bridge in
compatibility mode. Layers are 0-based; the embeddings are layer :data:`EMBED_LAYER` (-1), read at
``blocks.0.hook_resid_pre``.

Position classes: position 0 (``start``, which carries the massive activation in most models) and
every later position (``other``). Mean ablation, calibration means and regressions are computed per
class, because the first token's activations are atypical.
"""

from __future__ import annotations

import re

EMBED_LAYER = -1  # layer index of the embeddings (hook blocks.0.hook_resid_pre)
EMBED_HOOK = "blocks.0.hook_resid_pre"

# short kind -> the part after "blocks.L."
_KINDS = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "attn_scores": "attn.hook_attn_scores",
    "pattern": "attn.hook_pattern",
    "pre": "mlp.hook_pre",
    "pre_linear": "mlp.hook_pre_linear",
    "post": "mlp.hook_post",
    "ln2_normalized": "ln2.hook_normalized",
    "ln2_out": "ln2.hook_out",
}
KINDS = tuple(_KINDS)
_BLOCK = re.compile(r"^blocks\.(\d+)\.")

START, OTHER = "start", "other"
POSITION_CLASSES = (START, OTHER)  # index 0: position 0; index 1: positions >= 1


def act_name(kind: str, layer: int) -> str:
    """The hook name of ``kind`` in block ``layer`` (e.g. ``("z", 3)`` -> ``blocks.3.attn.hook_z``)."""
    try:
        return f"blocks.{int(layer)}.{_KINDS[kind]}"
    except KeyError:
        from mi_massive.errors import MiMassiveError

        raise MiMassiveError(f"unknown hook kind '{kind}'; known: {', '.join(KINDS)}") from None


def act_pattern(kind: str) -> str:
    """A readable pattern for docs and provenance: ``blocks.L.attn.hook_z``."""
    return f"blocks.L.{_KINDS[kind]}"


def resid_names(n_layers: int, *, include_embed: bool = True) -> list[str]:
    """The embeddings (optional) then every block output ``blocks.L.hook_resid_post``."""
    return ([EMBED_HOOK] if include_embed else []) + [act_name("resid_post", layer) for layer in range(n_layers)]


def hook_layer(name: str) -> tuple[int, str]:
    """(layer index, label) of a hook name: the embeddings are (-1, ``"embed"``), block L is (L, ``"block L"``)."""
    if name == EMBED_HOOK:
        return EMBED_LAYER, "embed"
    match = _BLOCK.match(name)
    if match is None:
        from mi_massive.errors import MiMassiveError

        raise MiMassiveError(f"'{name}' is not a block hook name (blocks.L....)")
    layer = int(match.group(1))
    return layer, f"block {layer}"


def position_class(position: int) -> str:
    """``"start"`` for position 0, ``"other"`` for every later position."""
    return START if position == 0 else OTHER


def position_class_index(position: int) -> int:
    """0 for position 0, 1 for every later position (the row of a ``[2, ...]`` per-class tensor)."""
    return 0 if position == 0 else 1
