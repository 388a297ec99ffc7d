"""What a variant is: a :class:`VariantSpec` (structure + TVR schedule), named like ``tvr+kv_bias``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mi_massive.errors import MiMassiveError
from mi_massive.core.variants.dyt import DyTAlpha
from mi_massive.core.variants.tvr import TVRConfig

COMPONENTS = ("kv_bias", "dyt", "register", "tvr")
NAMED = ("baseline", "kv_bias", "dyt", "tvr", "register", "tvr+kv_bias", "tvr+dyt")


@dataclass(frozen=True)
class VariantSpec:
    """A mitigation variant.

    ``kv_bias``/``dyt``/``register`` change the architecture (new parameters, matching bridge components);
    ``tvr`` is a weight transform applied every ``tvr.interval`` optimiser steps during training (and
    once, on demand). ``kv_bias_init_std`` / ``register_init_std`` are the N(0, std^2) init of the new
    parameters (Sun et al.: 0.02). ``dyt_alpha`` holds alpha0 (default 0.5, optionally per norm type).
    """

    kv_bias: bool = False
    dyt: bool = False
    register: bool = False
    tvr: TVRConfig | None = None
    kv_bias_init_std: float = 0.02
    register_init_std: float = 0.02
    dyt_alpha: DyTAlpha = field(default_factory=DyTAlpha)

    def __post_init__(self) -> None:
        import math

        for name in ("kv_bias_init_std", "register_init_std"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise MiMassiveError(f"{name} must be a finite number >= 0, got {value}")

    @property
    def name(self) -> str:
        parts = [c for c in ("tvr", "kv_bias", "dyt", "register") if (getattr(self, c) if c != "tvr" else self.tvr)]
        return "+".join(parts) or "baseline"

    @property
    def structural(self) -> bool:
        return self.kv_bias or self.dyt or self.register

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VariantSpec":
        data = {k: v for k, v in data.items() if k != "name"}
        tvr = data.pop("tvr", None)
        alpha = data.pop("dyt_alpha", None)
        return cls(**data, tvr=TVRConfig(**tvr) if tvr else None, dyt_alpha=DyTAlpha(**alpha) if alpha else DyTAlpha())

    @classmethod
    def parse(cls, name: str, *, tvr: TVRConfig | None = None, **options: Any) -> "VariantSpec":
        """``baseline``, ``kv_bias``, ``dyt``, ``tvr``, ``register`` or ``+``-joined hybrids (``tvr+kv_bias``).

        ``tvr`` gives the TVR parameters when the name contains ``tvr`` (default :class:`TVRConfig`).
        An empty name (``-v ""``) is an error, not the baseline:

        >>> VariantSpec.parse("tvr+kv_bias").name, VariantSpec.parse("baseline").name
        ('tvr+kv_bias', 'baseline')
        >>> VariantSpec.parse(" ")
        Traceback (most recent call last):
        ...
        mi_massive.errors.MiMassiveError: the variant name is empty; use baseline or '+'-joined kv_bias, dyt, register, tvr (e.g. tvr+kv_bias)
        """
        raw = [p.strip().replace("-", "_") for p in str(name).lower().split("+")]
        parts = [p for p in raw if p]
        if not parts or len(parts) != len(raw):
            what = "empty" if not parts else f"'{name}' has an empty part"
            raise MiMassiveError(f"the variant name is {what}; use baseline or '+'-joined {', '.join(COMPONENTS)} "
                                 "(e.g. tvr+kv_bias)")
        if parts == ["baseline"]:
            return cls(**options)
        unknown = [p for p in parts if p not in COMPONENTS]
        if unknown:
            raise MiMassiveError(f"unknown variant component(s) {unknown}; use baseline or "
                                 f"'+'-joined {', '.join(COMPONENTS)} (e.g. tvr+kv_bias)")
        spec = cls(kv_bias="kv_bias" in parts, dyt="dyt" in parts, register="register" in parts,
                   tvr=(tvr or TVRConfig()) if "tvr" in parts else None)
        return replace(spec, **options)
