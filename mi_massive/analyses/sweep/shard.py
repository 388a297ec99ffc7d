"""The all-heads sweep split over layers: each shard a unit (a Ray task, or in this process), merged exactly.

Each shard (:func:`mi_massive.core.units.run_layer_shards`: contiguous layer groups) loads the model itself (from its spec), builds the same corpus, and runs
:func:`mi_massive.analyses.sweep.run.sweep` on its layers only (mean ablation: the reference means of its
layers, over the same corpus). Every ablated layer's values depend only on that layer (the fast method
restarts from the clean run's cached block inputs), so the merged :class:`SweepResult` -- values filled
layer by layer, baseline from the first shard -- has the same numbers in the same order as one
process. The merge checks that every shard saw the same baseline.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mi_massive.analyses.sweep.record import SweepResult
from mi_massive.core.io import to_json
from mi_massive.core.units import UnitStore, merge_layer_rows, run_layer_shards, unit_model
from mi_massive.errors import MiMassiveError


def sweep_shard_unit(needs: Mapping[str, str], *, model: str, dtype: str, device: str | None, corpus: dict[str, Any],
                     entries: list[list[int]], layers: list[int], loss: bool, mlps: bool, mode: str, method: str,
                     batch_size: int) -> str:
    """One shard: the sweep of ``layers`` (JSON of its :class:`SweepResult`)."""
    from mi_massive.analyses.sweep.run import sweep
    from mi_massive.core.cli import make_corpus
    from mi_massive.core.names import act_name

    bridge = unit_model(model, dtype, device)  # sharded over the GPUs Ray gave this unit
    data = make_corpus(bridge, corpus.get("text"), corpus.get("corpus"), n_samples=corpus["n_samples"],
                       seq_len=corpus["seq_len"], seed=corpus["seed"], prepend_bos=corpus["prepend_bos"],
                       prepend_bos_source=corpus.get("prepend_bos_source"))
    means = None
    if mode == "mean":
        from mi_massive.core.references import reference_means

        names = [act_name(k, layer) for layer in layers for k in (["z", "mlp_out"] if mlps else ["z"])]
        means = reference_means(bridge, data, names, batch_size=batch_size)
    res = sweep(bridge, data, [tuple(e) for e in entries], loss=loss, mlps=mlps, mode=mode, means=means,
                method=method, layers=layers, batch_size=batch_size, progress=False)
    return to_json(res.to_dict())


def merge_shards(parts: Sequence[SweepResult], n_layers: int) -> SweepResult:
    """One :class:`SweepResult` from shards covering disjoint layers (see the module doc)."""
    import numpy as np
    import torch

    def tensor(data):  # JSON turned the NaN of layers outside a shard into null
        return torch.from_numpy(np.array(data, dtype=np.float64)).to(torch.float32)

    first = parts[0]
    if any(part.baseline != first.baseline for part in parts):
        raise MiMassiveError("sweep shards disagree on the unablated baseline: not the same model or corpus")
    groups = [part.provenance["options"]["layers"] for part in parts]
    values = tensor(merge_layer_rows([part.values for part in parts], groups, "sweep"))
    mlp_values = (tensor(merge_layer_rows([part.mlp_values for part in parts], groups, "sweep"))
                  if first.mlp_values is not None else None)
    baseline = tensor(first.baseline)
    provenance = {**first.provenance, "options": {**first.provenance["options"], "layers": list(range(n_layers)),
                                                  "shards": len(parts)},
                  "timing": {"seconds": max(p.seconds or 0.0 for p in parts)}}
    return SweepResult(provenance=provenance, metric_names=first.metric_names, mode=first.mode, method=first.method,
                       baseline=first.baseline, values=values.tolist(),
                       effect=(values - baseline[None, None]).mean(2).tolist(),
                       mlp_values=None if mlp_values is None else mlp_values.tolist(),
                       mlp_effect=None if mlp_values is None else (mlp_values - baseline[None]).mean(1).tolist())


def sharded_sweep(store: UnitStore, *, model: str, n_layers: int, shards: int, engine: str = "auto",
                  ray_address: str | None = None, num_cpus: float = 1.0, num_gpus: float | None = None,
                  progress: bool = True, log=None, **kwargs: Any) -> SweepResult:
    """Run the sweep as ``shards`` units (``kwargs``: the arguments of :func:`sweep_shard_unit` except
    ``layers``) in ``store`` (resumable), and merge them. ``num_gpus`` per shard (None: from the model's size,
    :func:`mi_massive.core.units.run_layer_shards`)."""
    _, paths = run_layer_shards(store, "mi_massive.analyses.sweep.shard:sweep_shard_unit", "sweep",
                                n_layers=n_layers, shards=shards, kwargs={"model": model, **kwargs}, engine=engine,
                                ray_address=ray_address, num_cpus=num_cpus, num_gpus=num_gpus, progress=progress,
                                log=log)
    return merge_shards([SweepResult.load(p) for p in paths], n_layers)
