"""One base for every result: typed dataclasses that save as JSON and load back as themselves.

>>> from dataclasses import dataclass
>>> @dataclass(repr=False)
... class Demo(Record):
...     layer: int
...     values: list[float]
>>> r = Demo(layer=3, values=[1.0, 2.5])
>>> Demo.from_dict(r.to_dict()) == r
True
>>> r
Demo(layer=3, values=[2 items])

A record is a (nested) dataclass whose fields carry their units in the class docstring. ``save``
writes it atomically as JSON (:func:`mi_massive.core.io.write_json`); ``load`` reads the JSON and
rebuilds the same class, nested dataclasses included, from the type annotations (no pickle, no code
from the file). ``__repr__`` is one short line; ``_repr_html_`` shows a compact table of the scalar
fields in a notebook (the provenance is summarised, not dumped); ``to_dataframe`` gives the record's
main table as a pandas DataFrame (each record names it in ``_table``).
"""

from __future__ import annotations

import dataclasses
import html
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from mi_massive.core.io import read_json, write_json
from mi_massive.errors import MiMassiveError

R = TypeVar("R", bound="Record")


def _build(tp: Any, value: Any) -> Any:
    """``value`` (plain JSON data) converted to the annotated type ``tp`` (dataclasses rebuilt)."""
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _build(option, value)
        return _build(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = get_type_hints(tp)
        known = {_key(f): f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(value) - set(known)
        if unknown:
            raise MiMassiveError(f"{tp.__name__}: unexpected field(s) {', '.join(sorted(unknown))} in the file")
        return tp(**{known[k]: _build(hints[known[k]], v) for k, v in value.items()})
    if origin in (list, typing.Sequence) and isinstance(value, list):
        (item,) = get_args(tp) or (Any,)
        return [_build(item, v) for v in value]
    if origin is tuple and isinstance(value, list):
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin is dict and isinstance(value, dict):
        _k, item = get_args(tp) or (str, Any)
        return {k: _build(item, v) for k, v in value.items()}
    if tp is float and isinstance(value, (int, str)):
        return float(value)  # JSON stores inf as "inf" and whole floats as ints
    return value


def json_field(key: str | None = None, *, omit_none: bool = False, **kwargs: Any) -> Any:
    """A record field saved under the JSON key ``key`` (e.g. ``"class"``, a Python keyword), left out of
    the JSON when ``omit_none`` and its value is None (keys that only some results have)."""
    return dataclasses.field(metadata={"json_key": key, "omit_none": omit_none}, **kwargs)


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("json_key") or f.name


def _plain(value: Any) -> Any:
    """Nested dataclasses -> dicts under their JSON keys (other values as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def by_name(items: list[Any], name: str, what: str) -> Any:
    """The item of ``items`` whose ``.name`` is ``name``; a one-line error lists the names there are."""
    for item in items:
        if item.name == name:
            return item
    raise MiMassiveError(f"no {what} '{name}'; {what}s: {', '.join(i.name for i in items)}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return f"[{len(value)} items]"
    if dataclasses.is_dataclass(value):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclasses.dataclass(repr=False)
class Record:
    """Base of every result record: ``save``/``load``, short ``repr``, notebook table, DataFrame."""

    _table: ClassVar[str | None] = None  # the list field that ``to_dataframe`` turns into rows

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (what ``save`` writes)."""
        return _plain(self)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Rebuild the record (nested dataclasses included) from :meth:`to_dict` data."""
        if not isinstance(data, dict):
            raise MiMassiveError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.init and _key(f) not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise MiMassiveError(f"not a {cls.__name__} file: missing field(s) {', '.join(missing)}")
        return _build(cls, data)

    def save(self, path: str | Path) -> Path:
        """Write the record atomically as JSON; returns the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a record written by :meth:`save` (returns an instance of ``cls``)."""
        return cls.from_dict(read_json(path))

    # ------------------------------------------------------------------ display
    def _scalars(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "provenance"]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={_short(v)}" for k, v in self._scalars()[:6])
        more = ", ..." if len(self._scalars()) > 6 else ""
        return f"{type(self).__name__}({body}{more})"

    def _model_name(self) -> str:
        prov = getattr(self, "provenance", None) or {}
        model = prov.get("model", {}) if isinstance(prov, dict) else {}
        return model.get("name") or model.get("spec") or ""

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(_short(v))}</td></tr>"
                       for k, v in self._scalars())
        title = html.escape(type(self).__name__ + (f" — {self._model_name()}" if self._model_name() else ""))
        table = ""
        if self._table is not None:
            try:
                table = self.to_dataframe().head(10).to_html(float_format=lambda x: f"{x:.4g}", border=0)
            except Exception:  # a display must never raise in a notebook
                table = ""
        return f"<div><b>{title}</b><table>{rows}</table>{table}</div>"

    def to_dataframe(self):
        """The record's main table (the list field named by ``_table``) as a pandas DataFrame."""
        import pandas as pd

        if self._table is None:
            raise MiMassiveError(f"{type(self).__name__} has no tabular part")
        rows = getattr(self, self._table)
        return pd.DataFrame([_plain(r) for r in rows])
