"""Hook names and position classes: the one place where ``blocks.L...`` strings are built.

>>> act_name("resid_post", 11)
'blocks.11.hook_resid_post'
>>> act_name("z", 3), act_name("pattern", 0), act_name("post", 2)
('blocks.3.attn.hook_z', 'blocks.0.attn.hook_pattern', 'blocks.2.mlp.hook_post')
>>> resid_names(2)
['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
>>> hook_layer("blocks.0.hook_resid_pre"), hook_layer("blocks.7.hook_resid_post")
((-1, 'embed'), (7, 'block 7'))
>>> expand_hooks("mlp_out", ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"], 2)
['blocks.0.hook_mlp_out', 'blocks.1.hook_mlp_out']
>>> position_class(0), position_class(5)
('start', 'other')

Names follow TransformerLens' ``utils.get_act_name``: a short kind (``resid_post``, ``z``,
``pattern``, ...) plus a 0-based block index gives the full hook name of the bridge in
compatibility mode. Layers are 0-based; the embeddings are layer :data:`EMBED_LAYER` (-1), read at
``blocks.0.hook_resid_pre``.

Scan hooks (:func:`expand_hooks`, ``mi-massive scan --hooks``): a kind of :data:`SCAN_KINDS` (every
block, or the final norm), a full hook name, the part after ``blocks.L.`` (``hook_mlp_out``,
``attn.hook_q``: every block) or a glob pattern over the model's hook names (``blocks.*.hook_mlp_out``).

Position classes: position 0 (``start``, which carries the massive activation in most models) and
every later position (``other``). Mean ablation, calibration means and regressions are computed per
class, because the first token's activations are atypical.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

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
    "ln1_post_in": "ln1_post.hook_in",  # post-sublayer norms (Gemma-2/3, OLMo-2): input = the raw sublayer output
    "ln1_post_out": "ln1_post.hook_out",
    "ln2_post_in": "ln2_post.hook_in",
    "ln2_post_out": "ln2_post.hook_out",
    "ln1": "ln1.hook_out",
    "ln1_normalized": "ln1.hook_normalized",
    "ln1_out": "ln1.hook_out",
    "ln2": "ln2.hook_out",
    "mlp_post": "mlp.hook_post",
    "mlp_input": "mlp.hook_in",  # what the MLP reads (no pre-MLP norm in OLMo-2: the residual itself)
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


# ------------------------------------------------------------------ scan hooks (scan --hooks)
# kind -> the part after "blocks.L." (or, for the final norm, the whole name); norm kinds read the norm's
# output, weight and bias applied (``hook_out``: what the next sublayer reads; the bridge's ``hook_normalized``
# is taken before the norm's weight); q/k/v are [batch, pos, head, d_head]
SCAN_KINDS = {
    "resid_post": "hook_resid_post",
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "ln1": "ln1.hook_out",
    "ln2": "ln2.hook_out",
    "ln_final": "ln_final.hook_out",
    "attn.hook_q": "attn.hook_q",
    "attn.hook_k": "attn.hook_k",
    "attn.hook_v": "attn.hook_v",
    "mlp.hook_post": "mlp.hook_post",
}
FINAL_HOOK_KINDS = ("ln_final",)  # kinds that are not per block (layer index n_layers: after the last block)
NOT_PER_TOKEN = ("hook_pattern", "hook_attn_scores", "hook_cos", "hook_sin", "rotary_emb.", "embed.hook_in",
                 "unembed.", "hook_unembed")  # [batch, head, q, k], rotary tables, token ids, logits
_GLOB = re.compile(r"[*?\[]")


def _hook_order(name: str, index: int, first_block: int, n_layers: int) -> tuple[int, int]:
    match = _BLOCK.match(name)
    if match is not None:
        return int(match.group(1)), index
    return (-1 if index < first_block else n_layers), index


def expand_hooks(specs: str | Sequence[str], hook_names: Sequence[str], n_layers: int, *,
                 include_embed: bool = True) -> list[str]:
    """The hook names of ``scan --hooks`` specs (comma-separated string or list), in order, without repeats.

    >>> names = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.attn.hook_q",
    ...          "blocks.1.hook_resid_post", "blocks.1.attn.hook_q", "ln_final.hook_out"]
    >>> expand_hooks("resid_post", names, 2)
    ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
    >>> expand_hooks("attn.hook_q,ln_final", names, 2)
    ['blocks.0.attn.hook_q', 'blocks.1.attn.hook_q', 'ln_final.hook_out']
    >>> expand_hooks(["blocks.*.hook_resid_post", "blocks.1.attn.hook_q"], names, 2)
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post', 'blocks.1.attn.hook_q']

    Each spec is one of: a kind of :data:`SCAN_KINDS` or of :func:`act_name` (every block; ``resid_post``
    also gives the embeddings, ``blocks.0.hook_resid_pre``, when ``include_embed``; ``ln_final`` is the
    final norm); a full hook name of the model; the part after ``blocks.L.`` (``hook_mlp_out``: every
    block); a glob pattern (``*``, ``?``, ``[...]``) over ``hook_names``, whose matches come in block order,
    leaving out hooks that are not per token (attention patterns and scores, rotary tables, token ids).
    Anything else, or a kind the model lacks, is a one-line :class:`MiMassiveError` listing the kinds.
    """
    from mi_massive.errors import MiMassiveError

    items = [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs) if s and s.strip()]
    if not items:
        raise MiMassiveError(f"no hooks given; kinds: {', '.join(SCAN_KINDS)} (or hook names / patterns)")
    available = list(hook_names)
    known = set(available)
    first_block = next((i for i, n in enumerate(available) if _BLOCK.match(n)), len(available))
    out: list[str] = []

    def per_block(suffix: str, item: str) -> list[str]:
        names = [f"blocks.{layer}.{suffix}" for layer in range(n_layers)]
        if missing := [n for n in names if n not in known]:
            raise MiMassiveError(f"hook '{item}' is not in this model ({missing[0]} missing); "
                                 f"kinds: {', '.join(SCAN_KINDS)}")
        return names

    for item in items:
        if item in FINAL_HOOK_KINDS:
            names = [SCAN_KINDS[item]]
            if names[0] not in known:
                raise MiMassiveError(f"hook '{item}' is not in this model ({names[0]} missing)")
        elif item in SCAN_KINDS or item in _KINDS:
            names = per_block(SCAN_KINDS.get(item) or _KINDS[item], item)
            if item == "resid_post" and include_embed:
                names = [EMBED_HOOK] + names
        elif item in known:
            names = [item]
        elif _GLOB.search(item):
            matched = [(i, n) for i, n in enumerate(available) if fnmatch.fnmatchcase(n, item)
                       and not any(tag in n for tag in NOT_PER_TOKEN)]
            if not matched:
                raise MiMassiveError(f"hook pattern '{item}' matches no per-token hook of this model")
            names = [n for i, n in sorted(matched, key=lambda p: _hook_order(p[1], p[0], first_block, n_layers))]
        elif n_layers and f"blocks.0.{item}" in known:
            names = per_block(item, item)
        else:
            raise MiMassiveError(f"unknown hook '{item}': give a kind ({', '.join(SCAN_KINDS)}), a hook name "
                                 f"(blocks.L.hook_mlp_out) or a pattern (blocks.*.hook_mlp_out)")
        out += [n for n in names if n not in out]
    return out


def hook_kind(name: str) -> str:
    """The scan kind of a hook name: ``resid_post`` for the block outputs and the embeddings, a key of
    :data:`SCAN_KINDS` where one matches, else the part after ``blocks.L.`` (or the whole name).

    >>> hook_kind("blocks.0.hook_resid_pre"), hook_kind("blocks.3.attn.hook_q"), hook_kind("blocks.2.attn.hook_z")
    ('resid_post', 'attn.hook_q', 'attn.hook_z')
    """
    if name == EMBED_HOOK:
        return "resid_post"
    match = _BLOCK.match(name)
    suffix = name[match.end():] if match else name
    for kind, value in SCAN_KINDS.items():
        if value == suffix:
            return kind
    return suffix


def scan_hook_layer(name: str, n_layers: int) -> tuple[int, str]:
    """(layer index, label) of any scan hook: as :func:`hook_layer` for the block outputs and embeddings,
    ``"block L <kind>"`` for other block hooks, (``n_layers``, kind) for hooks after the last block
    (``ln_final``) and (-1, name) for other hooks before the first block.

    >>> scan_hook_layer("blocks.7.hook_resid_post", 12), scan_hook_layer("blocks.2.hook_mlp_out", 12)
    ((7, 'block 7'), (2, 'block 2 mlp_out'))
    >>> scan_hook_layer("ln_final.hook_out", 12)
    (12, 'ln_final')
    """
    if name == EMBED_HOOK:
        return hook_layer(name)
    kind = hook_kind(name)
    match = _BLOCK.match(name)
    if match is None:
        return (n_layers, kind) if name.startswith(("ln_final", "unembed")) else (EMBED_LAYER, kind)
    layer = int(match.group(1))
    return (layer, f"block {layer}") if kind == "resid_post" else (layer, f"block {layer} {kind}")
