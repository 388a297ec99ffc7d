"""Targets: the one parser for heads, layers and neurons, shared by the CLI and the Python API.

>>> parse_heads("L18H8,L3H1")
[(3, 1), (18, 8)]
>>> parse_heads((18, 8)), parse_heads(["18.8", "18:8", (3, 1)])
([(18, 8)], [(3, 1), (18, 8)])
>>> parse_layers("0-3,7"), parse_layers(5), parse_layers(["2", 1, "1"])
([0, 1, 2, 3, 7], [5], [1, 2])
>>> parse_neurons("L2N17,L2N3,0.4")
{0: [4], 2: [3, 17]}
>>> parse_neurons({2: [17, 3]})
{2: [3, 17]}

Indices are 0-based: a head is ``(layer, query head)``, a neuron is ``(layer, index into d_mlp)``
(the ``blocks.L.mlp.hook_post`` axis). Results are sorted and free of duplicates. These functions
only read the notation; whether the indices exist in a model is checked by
:func:`mi_massive.core.hooks.check_heads` / ``check_layers`` / ``check_neurons``, which accept every
form accepted here (so ``ablate_heads(model, ["L18H8"])`` works).

Accepted forms:

* **heads**: ``(18, 8)``; a list of pairs; a string of items separated by commas or spaces, each
  ``L18H8``, ``18H8``, ``18.8`` or ``18:8`` (case-insensitive); a list mixing pairs and such strings.
* **layers**: an int; a string ``"5"``, ``"5,11"``, ``"0-3,7"``; an iterable of ints or such strings.
* **neurons**: ``{layer: [n, ...]}`` (or ``{layer: n}``); a string of ``L2N17``, ``2N17``, ``2.17`` or
  ``2:17`` items; a list of such strings or ``(layer, neuron)`` pairs.

Bad input raises :class:`~mi_massive.errors.MiMassiveError` naming the item and the accepted forms.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Mapping

from mi_massive.errors import MiMassiveError

HeadRef = tuple[int, int]

HEAD_FORMS = "(layer, head), 'L5H1', '5.1' or '5:1'"
LAYER_FORMS = "integers or ranges like 0-3,7"
NEURON_FORMS = "{layer: [neuron, ...]}, (layer, neuron), 'L2N17', '2.17' or '2:17'"

_SPLIT = re.compile(r"[,\s]+")
_HEAD = re.compile(r"(?:L)?(\d+)[.:H](\d+)", flags=re.IGNORECASE)
_NEURON = re.compile(r"(?:L)?(\d+)[.:N](\d+)", flags=re.IGNORECASE)


def _int(x: Any) -> int:
    """An exact integer (int, numpy/torch integer, 0-d integer tensor); raises TypeError otherwise."""
    if isinstance(x, bool):
        raise TypeError
    return operator.index(x)


def _items(text: str) -> list[str]:
    return [t for t in _SPLIT.split(text.strip()) if t]


def _pair(x: Any) -> tuple[int, int] | None:
    """``(a, b)`` of two integers, else None."""
    if isinstance(x, (str, bytes, Mapping)) or not hasattr(x, "__len__"):
        return None
    try:
        if len(x) != 2:
            return None
        return _int(x[0]), _int(x[1])
    except (TypeError, IndexError, KeyError):
        return None


# ------------------------------------------------------------------------------------------- heads
def parse_heads(heads: Any, *, allow_empty: bool = False) -> list[HeadRef]:
    """Sorted unique ``[(layer, head)]`` from any accepted head notation.

    >>> parse_heads("5.1, L6H2 5:1")
    [(5, 1), (6, 2)]

    Raises :class:`MiMassiveError` for an unreadable item or (unless ``allow_empty``) no head at all.
    """
    out: set[HeadRef] = set()
    single = _pair(heads) if isinstance(heads, tuple) else None
    if single is not None:
        out.add(single)
    else:
        items = _items(heads) if isinstance(heads, str) else _iterate(heads, "head", HEAD_FORMS)
        for item in items:
            if isinstance(item, str):
                for token in _items(item):
                    m = _HEAD.fullmatch(token)
                    if not m:
                        raise MiMassiveError(f"cannot read head '{token}': write {HEAD_FORMS}")
                    out.add((int(m.group(1)), int(m.group(2))))
            else:
                pair = _pair(item)
                if pair is None:
                    raise MiMassiveError(f"cannot read head {item!r}: write {HEAD_FORMS}")
                out.add(pair)
    if not out and not allow_empty:
        raise MiMassiveError(f"empty head set: give at least one head as {HEAD_FORMS}")
    return sorted(out)


def _iterate(x: Any, what: str, forms: str) -> list:
    try:
        return list(x)
    except TypeError:
        raise MiMassiveError(f"cannot read {what}s {x!r}: write {forms}") from None


# ------------------------------------------------------------------------------------------ layers
def _index_part(part: str) -> list[int]:
    """``"5"`` -> [5]; ``"0-3"`` -> [0, 1, 2, 3]; raises ValueError when unreadable."""
    if "-" in part[1:]:
        lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
        lo_i, hi_i = int(lo), int(hi)
        if hi_i < lo_i:
            raise ValueError
        return list(range(lo_i, hi_i + 1))
    return [int(part)]


def parse_layers(layers: Any, *, option: str | None = None, what: str = "layer",
                 allow_empty: bool = False) -> list[int] | None:
    """Sorted unique layer (or other index) list from any accepted notation; ``None`` stays ``None``.

    >>> parse_layers("0-2, 7"), parse_layers(range(3)), parse_layers(None) is None
    ([0, 1, 2, 7], [0, 1, 2], True)

    ``option`` (a CLI option such as ``"--layers"``) makes the messages name it:
    ``--layers expects integers or ranges like 0-3,7; got 'x'`` and ``--layers is empty``.
    """
    if layers is None:
        return None

    def bad(item: Any) -> MiMassiveError:
        if option is not None:
            return MiMassiveError(f"{option} expects {LAYER_FORMS}; got '{layers}'")
        return MiMassiveError(f"cannot read {what} {item!r}: write {LAYER_FORMS} (or a list of integers)")

    out: set[int] = set()
    items = [layers] if isinstance(layers, str) else None
    if items is None:
        try:
            items = [_int(layers)]
        except TypeError:
            items = _iterate(layers, what, LAYER_FORMS)
    for item in items:
        if isinstance(item, str):
            for part in item.replace(" ", "").split(","):
                if not part:
                    continue
                try:
                    out.update(_index_part(part))
                except ValueError:
                    raise bad(part) from None
        else:
            try:
                out.add(_int(item))
            except TypeError:
                raise bad(item) from None
    if not out and not allow_empty:
        raise MiMassiveError(f"{option} is empty" if option is not None
                             else f"empty {what} set: give at least one {what}")
    return sorted(out)


# ----------------------------------------------------------------------------------------- neurons
def parse_neurons(neurons: Any, *, allow_empty: bool = False) -> dict[int, list[int]]:
    """``{layer: sorted unique neurons}`` (layers ascending) from any accepted neuron notation.

    >>> parse_neurons([(1, 7), "L1N2", "L0N5"])
    {0: [5], 1: [2, 7]}

    With ``allow_empty`` a layer mapped to an empty list is kept (so a range check can name it).
    """
    out: dict[int, set[int]] = {}
    if isinstance(neurons, Mapping):
        for layer, ns in neurons.items():
            try:
                layer_i = _int(layer) if not isinstance(layer, str) else int(layer.strip().lstrip("Ll"))
            except (TypeError, ValueError):
                raise MiMassiveError(f"cannot read neuron layer {layer!r}: write {NEURON_FORMS}") from None
            values = [ns] if not isinstance(ns, str) and not hasattr(ns, "__iter__") else ns
            try:
                got = parse_layers(values, what="neuron", allow_empty=True)
            except MiMassiveError:
                raise MiMassiveError(f"cannot read neurons {ns!r} of layer {layer_i}: write {NEURON_FORMS}") from None
            out.setdefault(layer_i, set()).update(got)
    else:
        pair = _pair(neurons) if isinstance(neurons, tuple) else None
        items = [neurons] if pair is not None or isinstance(neurons, str) else _iterate(neurons, "neuron", NEURON_FORMS)
        for item in items:
            if isinstance(item, str):
                for token in _items(item):
                    m = _NEURON.fullmatch(token)
                    if not m:
                        raise MiMassiveError(f"cannot read neuron '{token}': write {NEURON_FORMS}")
                    out.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
            else:
                p = _pair(item)
                if p is None:
                    raise MiMassiveError(f"cannot read neuron {item!r}: write {NEURON_FORMS}")
                out.setdefault(p[0], set()).add(p[1])
    if not allow_empty and not any(out.values()):
        raise MiMassiveError(f"empty neuron set: give at least one neuron as {NEURON_FORMS}")
    return {layer: sorted(out[layer]) for layer in sorted(out)}


MAX_INDEX = 100_000  # no model has this many layers or heads: a larger index is refused before any range is expanded


def parse_index_list(value: str | None, option: str) -> list[int] | None:
    """CLI form of :func:`parse_layers`: ``"5"``, ``"5,11"``, ``"0-3,7"`` -> sorted unique ints; None stays None.

    >>> parse_index_list("0-3,7", "--layers")
    [0, 1, 2, 3, 7]
    >>> parse_index_list("0-999999999", "--layers")
    Traceback (most recent call last):
    ...
    mi_massive.errors.MiMassiveError: --layers '0-999999999': 999,999,999 is out of range (indices stop below 100,000; the model's own bound is checked after loading)

    Every number is bounds-checked before a range is expanded (``0-999999999`` would build a billion-item
    list); the exact bound (the model's layers or heads) is checked once the model is loaded.
    """
    if value is not None:
        for part in re.split(r"[,\s]+", value):
            for number in re.findall(r"\d+", part):
                if int(number) >= MAX_INDEX:
                    raise MiMassiveError(f"{option} '{part}': {int(number):,} is out of range (indices stop below "
                                         f"{MAX_INDEX:,}; the model's own bound is checked after loading)")
    return parse_layers(value, option=option)


def head_label(layer: int, head: int) -> str:
    """``L5H1`` (the notation :func:`parse_heads` reads back)."""
    return f"L{layer}H{head}"


__all__ = ["HEAD_FORMS", "LAYER_FORMS", "NEURON_FORMS", "HeadRef", "head_label", "parse_heads",
           "parse_index_list", "parse_layers", "parse_neurons"]
