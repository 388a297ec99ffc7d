"""A patching grid split over layers: each shard a unit (a Ray task, or in this process), merged exactly.

>>> from mi_massive.analyses.patch.shard import merge_grids
>>> nan = float("nan")
>>> merge_grids([[[1.0, 2.0], [nan, nan]], [[nan, nan], [3.0, 4.0]]], [[0], [1]])
[[1.0, 2.0], [3.0, 4.0]]

Each shard loads the model from its spec and runs :func:`mi_massive.analyses.patch.run.patch` with
``layers=`` its layers; the fast method computes each layer's cells from the clean and corrupted runs
alone (batched per layer), so the merged grids -- rows taken from the shard that owns the layer -- equal
the single-process grids number for number.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from mi_massive.analyses.patch.record import PatchingResult
from mi_massive.core.io import to_json
from mi_massive.core.units import UnitStore, merge_layer_rows, run_layer_shards, unit_model
from mi_massive.errors import MiMassiveError


def patch_shard_unit(needs: Mapping[str, str], *, model: str, dtype: str, device: str | None, clean: str,
                     corrupted: str, metric: str, components: list[str], method: str, prepend_bos: bool,
                     layers: list[int], options: dict[str, Any]) -> str:
    """One shard: the grids of ``layers`` (JSON of its :class:`PatchingResult`)."""
    from mi_massive.analyses.patch.run import patch

    bridge = unit_model(model, dtype, device)  # sharded over the GPUs Ray gave this unit
    res = patch(bridge, clean, corrupted, metric=metric, components=components, method=method,
                prepend_bos=prepend_bos, layers=layers, progress=False, options=options)
    return to_json(res.to_dict())


def merge_grids(grids: Sequence[list[list[float]]], layers: Sequence[Sequence[int]]) -> list[list[float]]:
    """Row ``l`` of the result is row ``l`` of the grid whose shard owns layer ``l`` (JSON's null back to NaN)."""
    return [[float(v) if v is not None else math.nan for v in row] for row in merge_layer_rows(grids, layers, "patch")]


def sharded_patch(store: UnitStore, *, model: str, n_layers: int, shards: int, engine: str = "auto",
                  ray_address: str | None = None, num_cpus: float = 1.0, num_gpus: float | None = None,
                  progress: bool = True, log=None, **kwargs: Any) -> PatchingResult:
    """Run the grid as ``shards`` units over layers in ``store`` (resumable) and merge them (``kwargs``:
    the arguments of :func:`patch_shard_unit` except ``layers``). ``num_gpus`` per shard (None: from the
    model's size, :func:`mi_massive.core.units.run_layer_shards`)."""
    groups, paths = run_layer_shards(store, "mi_massive.analyses.patch.shard:patch_shard_unit", "patch",
                                     n_layers=n_layers, shards=shards, kwargs={"model": model, **kwargs},
                                     engine=engine, ray_address=ray_address, num_cpus=num_cpus, num_gpus=num_gpus,
                                     progress=progress, log=log)
    parts = [PatchingResult.load(p) for p in paths]
    first = parts[0]
    if any((p.clean, p.corrupted) != (first.clean, first.corrupted) for p in parts):
        raise MiMassiveError("patch shards disagree on the clean/corrupted metric: not the same model or prompts")
    options = {k: v for k, v in first.provenance["options"].items() if k != "layers"}
    return PatchingResult(
        provenance={**first.provenance, "options": {**options, "shards": len(parts)}}, metric=first.metric,
        clean=first.clean, corrupted=first.corrupted, clean_tokens=first.clean_tokens,
        corrupted_tokens=first.corrupted_tokens,
        results={c: merge_grids([p.results[c] for p in parts], groups) for c in first.results},
        normalised={c: merge_grids([p.normalised[c] for p in parts], groups) for c in first.normalised},
        backend=first.backend)
