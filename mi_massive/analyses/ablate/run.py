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
from mi_massive.core.references import reference_means, resample_donors
from mi_massive.core.names import act_name
from mi_massive.analyses.ablate.record import AblationResult, Condition, Effect
from mi_massive.core.provenance import provenance
from mi_massive.core.engine import iter_corpus
from mi_massive.core.loading.vit import refuse_vision

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
    kind_name = {"heads": "z", "attention": "attn_out", "mlp": "mlp_out", "neurons": "post"}[kind]
    return [act_name(kind_name, l) for l in range(n)]


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
    names = [act_name("resid_post", l) for l in range(n)]
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
                aux[(kind, mode)] = (reference_means(model, reference or corpus, names, batch_size=batch_size), None)
            elif mode == "resample":
                aux[(kind, mode)] = (None, resample_donors(model, corpus, names, seed=seed, batch_size=batch_size)[1])
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


def parse_tracked(tracked: Any, *, option: str = "tracked") -> list[tuple[int, int]]:
    """Tracked entries as [(position, dim)] from ``"0:5,1:7"`` or a list of pairs.

    >>> parse_tracked("0:5,1:7"), parse_tracked([(0, 5)])
    ([(0, 5), (1, 7)], [(0, 5)])
    """
    try:
        if isinstance(tracked, str):
            out = [tuple(int(v) for v in item.split(":")) for item in tracked.split(",") if item]
        else:
            out = [tuple(int(v) for v in item) for item in tracked]
        if not all(len(t) == 2 for t in out):
            raise ValueError
    except (ValueError, TypeError) as err:
        raise MiMassiveError(f"{option} takes 'pos:dim,...', got '{tracked}'") from err
    return out  # type: ignore[return-value]


def build_specs(model, corpus: Corpus, *, heads: Any = None, mlps: Any = None, neurons: Any = None,
                top_k: int | None = None, bottom_k: int | None = None, all_heads: bool = False,
                all_mlps: bool = False, mode: str = "zero", scan_result=None, batch_size: int = 8) -> list[AblationSpec]:
    """The conditions :func:`ablate` runs, in this order: ``heads``, the ``top_k`` / ``bottom_k`` sink
    heads (scored by :func:`mi_massive.analyses.heads.run.heads` on ``corpus``), every attention
    sublayer, every MLP, the ``mlps`` layers together, the ``neurons``.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> corpus = mm.text_corpus(model, "The cat sat.", prepend_bos=True)
    >>> [(s.name, s.kind, s.targets) for s in build_specs(model, corpus, heads="L1H0,L1H2", mlps="1")]
    [('heads L1H0,L1H2', 'heads', [(1, 0), (1, 2)]), ('MLP 1', 'mlp', [1])]
    """
    from mi_massive.core.targets import parse_heads

    A.check_mode(mode)
    for name, k in (("top_k", top_k), ("bottom_k", bottom_k)):
        if k is not None and k < 1:
            raise MiMassiveError(f"{name} must be a positive integer, got {k}")
    head_set = parse_heads(heads) if heads is not None else None
    if head_set is not None:
        A.check_heads(model, head_set)
    mlp_layers = A.check_layers(model, mlps, what="MLP layer") if mlps is not None else None
    neuron_set = A.check_neurons(model, neurons) if neurons is not None else None
    if not any([head_set, top_k, bottom_k, all_heads, all_mlps, mlp_layers, neuron_set]):
        raise MiMassiveError("nothing to ablate: give heads, mlps, neurons, top_k, bottom_k, all_heads or all_mlps")
    n = model.cfg.n_layers
    specs = []
    if head_set:
        specs.append(AblationSpec("heads " + ",".join(f"L{l}H{h}" for l, h in head_set), "heads", head_set, mode))
    if top_k or bottom_k:
        from mi_massive.analyses.heads.run import heads as head_scores

        if scan_result is None:
            from mi_massive.analyses.scan.run import scan

            scan_result = scan(model, corpus, batch_size=batch_size, progress=False)
        scores = head_scores(model, corpus, scan_result=scan_result, batch_size=batch_size, progress=False)
        if top_k:
            specs.append(AblationSpec(f"top-{top_k} sink heads", "heads", scores.top_k(top_k), mode))
        if bottom_k:
            specs.append(AblationSpec(f"bottom-{bottom_k} sink heads", "heads", scores.bottom_k(bottom_k), mode))
    if all_heads:
        specs.append(AblationSpec("all attention off", "attention", list(range(n)), mode, null=False))
    if all_mlps:
        specs.append(AblationSpec("all MLPs off", "mlp", list(range(n)), mode, null=False))
    if mlp_layers:
        specs.append(AblationSpec("MLP " + ",".join(map(str, mlp_layers)), "mlp", mlp_layers, mode))
    if neuron_set:
        label = " ".join(f"L{l}N{x}" for l, xs in neuron_set.items() for x in xs)
        specs.append(AblationSpec(f"neurons {label}", "neurons", neuron_set, mode))
    return specs


def ablate(model, corpus: Corpus, *, heads: Any = None, mlps: Any = None, neurons: Any = None,
           top_k: int | None = None, bottom_k: int | None = None, all_heads: bool = False, all_mlps: bool = False,
           mode: str = "zero", n_null: int = MIN_NULL, tracked: Any = None, seed: int = 0, batch_size: int = 8,
           reference: Corpus | None = None, scan_result=None, progress: bool = True,
           options: dict[str, Any] | None = None) -> AblationResult:
    """Remove heads / attention sublayers / MLPs / neurons and measure the massive activations, with a null.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
    >>> corpus = mm.text_corpus(model, ["The cat sat on the mat.", "A dog ran."], prepend_bos=True)
    >>> res = mm.ablate(model, corpus, mlps=[1], n_null=0, progress=False)
    >>> res.tracked, [c.name for c in res.conditions]
    ([[0, 5]], ['MLP 1'])
    >>> e = [e for e in res.conditions[0].effects if e.metric == "entry p0 d5" and e.layer == 1][0]
    >>> round(e.baseline), e.mean < -2000
    (3000, True)

    Each argument adds one condition (:func:`build_specs`): ``heads`` (any form of
    :func:`mi_massive.core.targets.parse_heads`: ``"L1H0,L1H2"``, ``[(1, 0)]``, ``"1.0"``) removed
    together; ``top_k`` / ``bottom_k``: the heads with the highest / lowest sink score; ``all_heads``
    / ``all_mlps``: every attention sublayer / MLP (no null); ``mlps``: those MLP layers together;
    ``neurons``: ``{layer: [n, ...]}`` or ``"L1N3"``. ``mode``: ``zero``, ``mean`` (the mean over
    ``reference``, default ``corpus``, per position class; computed on demand) or ``resample``
    (another sequence's activation). ``n_null``: random same-size sets for the null (0 or >= 20).
    ``tracked``: entries (position, dim) followed at every block (``"0:5,1:7"`` or pairs; default:
    up to four massive (position, dim) of a scan of ``corpus``). Effects are ablated - baseline per
    sequence, in the metric's units (|h| for ``top1``, signed h for ``entry p{pos} d{dim}``); see
    :func:`run_ablations` and :class:`~mi_massive.analyses.ablate.record.AblationResult`.
    """
    refuse_vision(model, "ablate", "its ablations hook per-head outputs (hook_z), attention and MLP outputs")
    if 0 < n_null < MIN_NULL or n_null < 0:
        raise MiMassiveError(f"the null needs at least {MIN_NULL} random sets (or 0 to skip it), got {n_null}")
    A.check_mode(mode)
    if tracked is None or top_k or bottom_k:
        if scan_result is None:
            from mi_massive.analyses.scan.run import scan

            scan_result = scan(model, corpus, batch_size=batch_size, progress=False)
    specs = build_specs(model, corpus, heads=heads, mlps=mlps, neurons=neurons, top_k=top_k, bottom_k=bottom_k,
                        all_heads=all_heads, all_mlps=all_mlps, mode=mode, scan_result=scan_result,
                        batch_size=batch_size)
    if tracked is None:
        tracked = sorted({(p, d) for _l, p, d in scan_result.massive_coordinates()})[:4]
    else:
        tracked = parse_tracked(tracked)
    return run_ablations(model, corpus, specs, tracked=tracked, n_null=n_null, seed=seed, batch_size=batch_size,
                         reference=reference, progress=progress, options=options)
