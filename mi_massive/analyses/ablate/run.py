"""``ablate``: remove heads / attention sublayers / MLPs / neurons and measure the massive activations.

Per condition and layer, metrics are ``top1`` (max |h| over real tokens of ``blocks.l.hook_resid_post``)
and, for each tracked (position, dim), the signed entry h_l[pos, dim]. The effect is ablated -
baseline per sequence: mean, 95% percentile-bootstrap CI over sequences, relative change. A null
distribution comes from >= 20 random sets of the same size and kind (heads from all heads, MLP
layers from all layers, neurons from the same layers); an effect whose mean lies inside the null's
central 95% range is labelled "within noise". A rerun of the baseline gives the numerical noise floor
(exactly 0 in fp32 on CPU).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from mi_massive.core.stats import bootstrap_ci
from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError
from mi_massive.core.hooks import ablation as A
from mi_massive.analyses.ablate.record import AblationResult, Condition, Effect
from mi_massive.core.io import provenance
from mi_massive.core.engine import iter_corpus

KINDS = ("heads", "attention", "mlp", "neurons")
MIN_NULL = 20


@dataclass
class AblationSpec:
    """What to remove: ``heads`` [(layer, head)], ``attention``/``mlp`` [layer], ``neurons`` {layer: [n]}."""

    name: str
    kind: str
    targets: Any
    mode: str = "zero"
    null: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def size(self) -> int:
        return sum(len(v) for v in self.targets.values()) if self.kind == "neurons" else len(self.targets)


def _hook_names(model, kind: str) -> list[str]:
    n = model.cfg.n_layers
    name_of = {"heads": A.z_name, "attention": A.attn_out_name, "mlp": A.mlp_out_name, "neurons": A.post_name}[kind]
    return [name_of(l) for l in range(n)]


def build_hooks(model, kind: str, targets, mode: str, means=None, donors=None) -> list:
    """The hooks of one ablation (validated)."""
    if kind == "heads":
        return A.ablate_heads(model, targets, mode, means=means, donors=donors)
    if kind == "attention":
        return A.ablate_attention(model, targets, mode, means=means, donors=donors)
    if kind == "mlp":
        return A.ablate_mlps(model, targets, mode, means=means, donors=donors)
    if kind == "neurons":
        return A.ablate_neurons(model, targets, mode, means=means, donors=donors)
    raise MiMassiveError(f"unknown ablation kind '{kind}'; choose one of {', '.join(KINDS)}")


def metric_keys(n_layers: int, tracked: Sequence[tuple[int, int]]) -> list[str]:
    return [f"top1@{l}" for l in range(n_layers)] + [f"entry p{p} d{d}@{l}" for p, d in tracked
                                                      for l in range(n_layers)]


def measure(model, corpus: Corpus, tracked: Sequence[tuple[int, int]], *,
            hooks_for: Callable[[range], list] | None = None, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Per sequence: top-1 |h| and tracked entries at every block output, with the given hooks."""
    n = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_post" for l in range(n)]
    out: dict[str, list[float]] = {k: [] for k in metric_keys(n, tracked)}
    for _idx, _ids, mask, _lg, acts in iter_corpus(model, corpus, names, batch_size=batch_size,
                                                    fwd_hooks=hooks_for or (), progress=False):
        for l, name in enumerate(names):
            h = acts[name]
            out[f"top1@{l}"] += h.abs().masked_fill(~mask[..., None], -1.0).flatten(1).amax(1).tolist()
            for p, d in tracked:
                out[f"entry p{p} d{d}@{l}"] += h[:, p, d].tolist()
    return {k: np.asarray(v) for k, v in out.items()}


def _random_sets(model, spec: AblationSpec, n: int, rng: random.Random) -> list:
    if spec.kind == "heads":
        pool = A.all_heads(model)
        chosen = {tuple(t) for t in spec.targets}
        draw = lambda: sorted(rng.sample(pool, len(chosen)))  # noqa: E731
    elif spec.kind in ("mlp", "attention"):
        pool = list(range(model.cfg.n_layers))
        chosen = set(spec.targets)
        draw = lambda: sorted(rng.sample(pool, len(chosen)))  # noqa: E731
    else:
        chosen = {(l, n_) for l, ns in spec.targets.items() for n_ in ns}
        draw = lambda: {l: sorted(rng.sample(range(model.cfg.d_mlp), len(ns))) for l, ns in spec.targets.items()}  # noqa: E731
    sets, tries = [], 0
    while len(sets) < n and tries < 50 * n:
        tries += 1
        s = draw()
        flat = {(l, x) for l, xs in s.items() for x in xs} if isinstance(s, dict) else {tuple(x) if isinstance(x, (list, tuple)) else x for x in s}
        if flat != chosen:
            sets.append(s)
    return sets


def run_ablations(model, corpus: Corpus, specs: Sequence[AblationSpec], *, tracked: Sequence[tuple[int, int]] = (),
                  n_null: int = MIN_NULL, seed: int = 0, batch_size: int = 8, reference: Corpus | None = None,
                  progress: bool = True, options: dict[str, Any] | None = None) -> AblationResult:
    """Baseline, each condition, and its random same-size null (see the module docstring).

    ``reference``: corpus for mean ablation (default: ``corpus`` itself). ``n_null`` must be 0 (no
    null) or >= 20. Conditions covering every component of their kind get no null (nothing to draw).
    """
    if not specs:
        raise MiMassiveError("no ablation given")
    if 0 < n_null < MIN_NULL:
        raise MiMassiveError(f"the null needs at least {MIN_NULL} random sets (or 0 to skip it), got {n_null}")
    for s in specs:
        A.check_mode(s.mode)
        build_hooks(model, s.kind, s.targets, "zero")  # validates targets
    tracked = [(int(p), int(d)) for p, d in tracked]
    for p, d in tracked:
        if not 0 <= d < model.cfg.d_model or not 0 <= p < min(corpus.lengths):
            raise MiMassiveError(f"tracked entry (position {p}, dim {d}) is outside the model/sequences")
    n_layers = model.cfg.n_layers
    keys = metric_keys(n_layers, tracked)
    base = measure(model, corpus, tracked, batch_size=batch_size)
    rerun = measure(model, corpus, tracked, batch_size=batch_size)
    rerun_diff = float(max(np.abs(base[k] - rerun[k]).max() for k in keys))
    aux: dict[tuple[str, str], tuple] = {}

    def hooks_factory(kind: str, targets, mode: str):
        if (kind, mode) not in aux:
            names = _hook_names(model, kind)
            if mode == "mean":
                aux[(kind, mode)] = (A.reference_means(model, reference or corpus, names, batch_size=batch_size), None)
            elif mode == "resample":
                aux[(kind, mode)] = (None, A.resample_donors(model, corpus, names, seed=seed, batch_size=batch_size)[1])
            else:
                aux[(kind, mode)] = (None, None)
        means, donors = aux[(kind, mode)]

        def for_batch(idx: range) -> list:
            d = None if donors is None else {n: v[idx.start:idx.stop] for n, v in donors.items()}
            return build_hooks(model, kind, targets, mode, means=means, donors=d)
        return for_batch

    rng = random.Random(seed)
    conditions = []
    bar = tqdm(specs, desc="ablations", disable=not progress, leave=False)
    for spec in bar:
        vals = measure(model, corpus, tracked, hooks_for=hooks_factory(spec.kind, spec.targets, spec.mode),
                       batch_size=batch_size)
        null_sets = _random_sets(model, spec, n_null, rng) if spec.null and n_null else []
        null_means: dict[str, list[float]] = {k: [] for k in keys}
        for s in null_sets:
            nv = measure(model, corpus, tracked, hooks_for=hooks_factory(spec.kind, s, spec.mode), batch_size=batch_size)
            for k in keys:
                null_means[k].append(float((nv[k] - base[k]).mean()))
        effects = []
        for k in keys:
            diff = vals[k] - base[k]
            metric, layer = k.rsplit("@", 1)
            mean = float(diff.mean())
            lo, hi = bootstrap_ci(diff, seed=seed)
            null_ci = within = None
            if null_sets:
                null_ci = [float(np.quantile(null_means[k], 0.025)), float(np.quantile(null_means[k], 0.975))]
                within = bool(null_ci[0] <= mean <= null_ci[1])
            b = float(base[k].mean())
            effects.append(Effect(metric=metric, layer=int(layer), baseline=b, ablated=float(vals[k].mean()),
                                  mean=mean, ci95=[lo, hi], relative=mean / abs(b) if b else float("nan"),
                                  null_ci95=null_ci, within_noise=within,
                                  label="no null" if within is None else ("within noise" if within else "beyond noise")))
        targets = {str(k): v for k, v in spec.targets.items()} if isinstance(spec.targets, dict) else \
            [list(t) if isinstance(t, tuple) else t for t in spec.targets]
        conditions.append(Condition(name=spec.name, kind=spec.kind, targets=targets, mode=spec.mode, effects=effects,
                                    null_kind=f"{len(null_sets)} random {spec.kind} sets of size {spec.size()}"
                                    if null_sets else None,
                                    null_sets=[{str(k): v for k, v in s.items()} if isinstance(s, dict) else
                                               [list(x) if isinstance(x, tuple) else x for x in s] for s in null_sets],
                                    null_means=null_means if null_sets else {}))
    opts = {"tracked": [list(t) for t in tracked], "n_null": n_null, "seed": seed, "batch_size": batch_size,
            "reference": "corpus" if reference is None else reference.describe(), **(options or {})}
    return AblationResult(provenance=provenance(model, corpus, options=opts), metrics=keys,
                          tracked=[list(t) for t in tracked], baseline={k: v.tolist() for k, v in base.items()},
                          rerun_max_abs_diff=rerun_diff, conditions=conditions)
