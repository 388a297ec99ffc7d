"""Intervention hooks: overwrite chosen residual-stream entries (layer, position, dim) with given values.

This is the Sun et al. / Owen et al. intervention done generically: at ``blocks.{L}.hook_resid_post``
(the block output) set the massive entries to 0, to a calibration mean, or (as a control) zero the
same number of randomly chosen ordinary dims. An :class:`EntryEdit` names the entries of one batch as
flat (row, position, dim, value) lists, so every sequence may have its own detected positions.
Everything else in the tensor is left bit-for-bit unchanged.

>>> import torch
>>> edit = entry_edit([(0, 0)], [5], mode="zero")
>>> x = torch.ones(1, 2, 8)
>>> set_entries(x, edit)[0, :, 5].tolist()
[0.0, 1.0]

Position classes (``start``: position 0, ``other``: later positions) come from :mod:`mi_massive.core.names`.

Hook functions here are plain ``(tensor, hook) -> tensor`` callables; running them is the runner's job
(:func:`mi_massive.core.engine.run_capture` ``fwd_hooks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int

from mi_massive.core.hooks.types import Hook
from mi_massive.core.names import OTHER, START, act_name, position_class  # noqa: F401 (re-exported)
from mi_massive.errors import MiMassiveError


@dataclass(frozen=True)
class EntryEdit:
    """Entries of a [batch, pos, d_model] tensor to overwrite: ``x[rows[i], positions[i], dims[i]] := values[i]``."""

    rows: Int[torch.Tensor, "n"]
    positions: Int[torch.Tensor, "n"]
    dims: Int[torch.Tensor, "n"]
    values: Float[torch.Tensor, "n"]

    def __post_init__(self) -> None:
        n = {len(self.rows), len(self.positions), len(self.dims), len(self.values)}
        if len(n) != 1:
            lengths = (len(self.rows), len(self.positions), len(self.dims), len(self.values))
            raise MiMassiveError(f"EntryEdit fields must have equal lengths; got rows/positions/dims/values {lengths}")

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[int, int, int, float]]) -> "EntryEdit":
        """From (row, position, dim, value) tuples."""
        if not entries:
            return cls.empty()
        rows, pos, dims, vals = zip(*entries)
        return cls(torch.tensor(rows, dtype=torch.long), torch.tensor(pos, dtype=torch.long),
                   torch.tensor(dims, dtype=torch.long), torch.tensor(vals, dtype=torch.float64))

    @classmethod
    def empty(cls) -> "EntryEdit":
        z = torch.zeros(0, dtype=torch.long)
        return cls(z, z, z, torch.zeros(0, dtype=torch.float64))


def set_entries(x: Float[torch.Tensor, "batch pos d_model"], edit: EntryEdit) -> Float[torch.Tensor, "batch pos d_model"]:
    """A copy of ``x`` with the edit's entries overwritten (cast to ``x.dtype``); all other entries unchanged.

    Entries whose row or position lies outside ``x`` (e.g. a shorter batch) are an error, not skipped.
    """
    out = x.clone()
    if len(edit) == 0:
        return out
    if int(edit.rows.max()) >= x.shape[0] or int(edit.positions.max()) >= x.shape[1] or int(edit.dims.max()) >= x.shape[2]:
        raise MiMassiveError(f"edit entry outside the hooked tensor of shape {tuple(x.shape)}: max row "
                             f"{int(edit.rows.max())}, position {int(edit.positions.max())}, dim {int(edit.dims.max())}")
    out[edit.rows.to(x.device), edit.positions.to(x.device), edit.dims.to(x.device)] = edit.values.to(x.dtype).to(
        x.device)  # cast on the CPU first: float64 does not exist on MPS
    return out


def set_entries_hook(edit: EntryEdit) -> Callable[..., torch.Tensor]:
    """A TransformerLens hook function that applies :func:`set_entries` with ``edit``."""

    def hook(x: torch.Tensor, hook=None) -> torch.Tensor:  # noqa: ARG001 (TransformerLens signature)
        return set_entries(x, edit)

    return hook


def entry_edit(
    coords: Sequence[tuple[int, int]],
    dims: Sequence[int],
    *,
    mode: str,
    means: Mapping[tuple[str, int], float] | None = None,
) -> EntryEdit:
    """The edit that sets every (row, position) in ``coords`` x every dim in ``dims``.

    ``mode="zero"`` writes 0; ``mode="mean"`` writes ``means[(position_class(position), dim)]`` (a
    calibration mean per position class and dim); a missing mean is an error, never a silent skip
    (the flaw of Owen et al., spec §5.2.2).
    """
    if mode not in ("zero", "mean"):
        raise MiMassiveError(f"unknown intervention mode '{mode}'; choose zero or mean")
    entries = []
    for row, pos in coords:
        for d in dims:
            if mode == "zero":
                value = 0.0
            else:
                key = (position_class(pos), int(d))
                if means is None or key not in means:
                    raise MiMassiveError(f"no calibration mean for position class '{key[0]}', dim {key[1]}")
                value = float(means[key])
            entries.append((int(row), int(pos), int(d), value))
    return EntryEdit.from_entries(entries)


def control_dims(d_model: int, exclude: Sequence[int], n: int, *, seed: int) -> list[int]:
    """``n`` distinct dims drawn uniformly (numpy ``default_rng(seed)``) from the dims not in ``exclude``."""
    pool = np.setdiff1d(np.arange(d_model), np.asarray(list(exclude), dtype=int))
    if n > len(pool):
        raise MiMassiveError(f"cannot draw {n} control dims from {len(pool)} ordinary dims (d_model {d_model} "
                             f"minus {d_model - len(pool)} excluded); ask for at most {len(pool)}")
    return sorted(int(d) for d in np.random.default_rng(seed).choice(pool, size=n, replace=False))


def layer_hooks(edits: Mapping[int, EntryEdit]) -> list[Hook]:
    """``fwd_hooks`` applying ``edits[layer]`` at each layer's ``hook_resid_post`` (one layer or many)."""
    return [(act_name("resid_post", layer), set_entries_hook(edit)) for layer, edit in sorted(edits.items())]
