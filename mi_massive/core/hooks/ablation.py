"""Ablation and patching hook factories (TransformerLens convention: ``(tensor, hook) -> tensor``).

Every factory returns a list of ``(hook name, function)`` pairs that can be passed to
``model.run_with_hooks(ids, fwd_hooks=...)``, ``model.hooks(fwd_hooks=...)`` or
:func:`mi_massive.core.engine.run_capture`. Lists compose by concatenation. No analysis writes its own
hook functions: they all come from here or from :mod:`mi_massive.core.hooks.attention`.

Where each component is removed (experiments-spec §3.3, §4; TransformerLens guide §2-§3):

* **one head** (layer L, head h): ``blocks.L.attn.hook_z[:, :, h]`` -- the head's value mix *before*
  W_O, shape [batch, pos, n_heads, d_head]. Heads are *query* heads, so on grouped-query models
  (SmolLM2: 9 query heads sharing 3 KV heads) ablating head h removes only head h; the shared
  key/value heads are untouched. The attention bias b_O is kept (it belongs to no head).
* **a whole attention sublayer**: ``blocks.L.hook_attn_out`` [batch, pos, d_model]. Zero ablation sets
  the whole sublayer output to 0, **so b_O is removed as well** (unlike zeroing every head at
  hook_z, which leaves b_O in the residual stream).
* **an MLP sublayer**: ``blocks.L.hook_mlp_out`` (includes b_out, which zero ablation removes).
* **single neurons**: ``blocks.L.mlp.hook_post`` [batch, pos, d_mlp] (the input of W_out; GELU(pre)
  for GPT-2, SiLU(gate)*up for Llama). b_out is kept.

Modes:

* ``zero``: replace with 0.
* ``mean``: replace with the mean over a reference corpus, computed separately for the two
  *position classes* -- position 0 and positions >= 1 -- because the first token's activations are
  atypical (it carries the massive activation). See :func:`mi_massive.core.references.reference_means`.
* ``resample``: replace with the same component's activation on a *different* sequence at the same
  position (``donor`` tensors aligned with the batch; see :func:`mi_massive.core.references.resample_donors`). Activation
  patching is resampling with the clean run as donor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from jaxtyping import Float, Int

from mi_massive.errors import MiMassiveError
from mi_massive.core.targets import HeadRef, parse_heads, parse_layers, parse_neurons  # noqa: F401 (parse_heads re-exported)
from mi_massive.core.hooks.types import Hook
from mi_massive.core.names import act_name

MODES = ("zero", "mean", "resample")


# ---------------------------------------------------------------------------------------------- checks
def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise MiMassiveError(f"unknown ablation mode '{mode}'; choose one of {', '.join(MODES)}")
    return mode


def check_layers(model, layers, *, what: str = "layer") -> list[int]:
    """Sorted distinct layers (any form :func:`~mi_massive.core.targets.parse_layers` reads: ``[0, 2]``,
    ``"0-2"``, ``5``); raises for an empty set or a layer outside [0, n_layers).

    >>> import mi_massive as mm
    >>> check_layers(mm.load_toy("toy-llama"), "0-1")
    [0, 1]
    """
    layers = parse_layers(layers, what=what, allow_empty=True)
    if not layers:
        raise MiMassiveError(f"empty {what} set: give at least one {what}")
    n = model.cfg.n_layers
    bad = [x for x in layers if not 0 <= x < n]
    if bad:
        raise MiMassiveError(f"{what} {bad[0]} out of range: the model has {n} layers (0..{n - 1})")
    return layers


def check_heads(model, heads) -> dict[int, list[int]]:
    """``{layer: sorted heads}`` from any head form (``[(5, 1)]``, ``"L5H1,L6H2"``, ``["5.1"]``, ...);
    raises for an empty set or a layer/head out of range.

    >>> import mi_massive as mm
    >>> check_heads(mm.load_toy("toy-llama"), "L1H2,L0H1 1.0")
    {0: [1], 1: [0, 2]}

    Head indices are query heads (0..n_heads-1), also on grouped-query models.
    """
    heads = parse_heads(heads, allow_empty=True)
    if not heads:
        raise MiMassiveError("empty head set: give at least one (layer, head)")
    check_layers(model, [layer for layer, _ in heads])
    n_heads = model.cfg.n_heads
    grouped: dict[int, list[int]] = {}
    for layer, head in heads:
        if not 0 <= head < n_heads:
            raise MiMassiveError(f"head {head} out of range in layer {layer}: the model has {n_heads} heads "
                                 f"per layer (0..{n_heads - 1})")
        grouped.setdefault(layer, []).append(head)
    return grouped


def check_neurons(model, neurons) -> dict[int, list[int]]:
    """``{layer: sorted neurons}`` (from ``{layer: [n, ...]}``, ``"L2N17,L2N3"``, ...) validated against d_mlp.

    >>> import mi_massive as mm
    >>> check_neurons(mm.load_toy("toy-llama"), "L1N7,1.3")
    {1: [3, 7]}
    """
    neurons = parse_neurons(neurons, allow_empty=True)
    check_layers(model, neurons.keys())
    d_mlp = model.cfg.d_mlp
    out = {}
    for layer, ns in neurons.items():
        if not ns:
            raise MiMassiveError(f"empty neuron set for layer {layer}")
        if not all(0 <= n < d_mlp for n in ns):
            raise MiMassiveError(f"neuron out of range in layer {layer}: d_mlp is {d_mlp}")
        out[int(layer)] = ns
    return out


def all_heads(model) -> list[HeadRef]:
    """Every (layer, head) of the model, layer-major."""
    return [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


# ------------------------------------------------------------------------------------ donors
def derangement(n: int, *, seed: int = 0, lengths: Sequence[int] | None = None) -> list[int]:
    """A donor index for every sequence: ``donor[i] != i`` and (if ``lengths``) at least as long as i.

    Deterministic for ``seed``. Raises when some sequence has no valid donor (e.g. a single sequence).
    """
    if n < 2:
        raise MiMassiveError("resample ablation needs at least 2 sequences (a donor must be another sequence)")
    gen = torch.Generator().manual_seed(seed)
    lengths = list(lengths) if lengths is not None else [0] * n
    donors = []
    for i in range(n):
        ok = [j for j in range(n) if j != i and lengths[j] >= lengths[i]]
        if not ok:
            raise MiMassiveError(f"resample: no other sequence is as long as sequence {i} ({lengths[i]} tokens)")
        donors.append(ok[int(torch.randint(len(ok), (1,), generator=gen))])
    return donors


# ------------------------------------------------------------------------------------- core replacer
def _replacement(x: torch.Tensor, mode: str, mean: torch.Tensor | None, donor: torch.Tensor | None,
                 index: tuple) -> torch.Tensor:
    """The values that replace ``x[index]`` (``index`` selects components on axis 2, or everything)."""
    if mode == "zero":
        return torch.zeros_like(x[index])
    if mode == "mean":
        if mean is None:
            raise MiMassiveError("mean ablation needs reference means (see reference_means)")
        m = mean.to(device=x.device, dtype=x.dtype)
        full = torch.empty_like(x)
        full[:, :1] = m[0]
        full[:, 1:] = m[1]
        return full[index]
    if donor is None:
        raise MiMassiveError("resample ablation needs donor activations (see resample_donors)")
    if donor.shape[0] != x.shape[0] or donor.shape[1] < x.shape[1]:
        raise MiMassiveError(f"donor activations {tuple(donor.shape)} do not cover the batch {tuple(x.shape)}")
    return donor[:, : x.shape[1]].to(device=x.device, dtype=x.dtype)[index]


def replace_hook(mode: str, *, components: Sequence[int] | None = None, mean: torch.Tensor | None = None,
                 donor: torch.Tensor | None = None, positions: Sequence[int] | None = None) -> Callable:
    """A hook function replacing ``x[:, positions, components]`` by zero / mean / donor values.

    ``components`` index axis 2 (heads of hook_z, neurons of hook_post); None = the whole tensor.
    ``positions`` restricts the edit to some positions (None = all). The input is not modified.
    """
    check_mode(mode)
    comp = list(components) if components is not None else None
    pos = list(positions) if positions is not None else None

    def hook_fn(x: torch.Tensor, hook=None) -> torch.Tensor:
        p = slice(None) if pos is None else pos
        index = (slice(None), p) if comp is None else (slice(None), p, comp)
        if pos is not None and comp is not None:  # advanced indexing on two axes: use a mesh
            index = (slice(None), torch.tensor(pos, device=x.device)[:, None], torch.tensor(comp, device=x.device)[None, :])
        out = x.clone()
        out[index] = _replacement(x, mode, mean, donor, index)
        return out

    return hook_fn


# ------------------------------------------------------------------------------------- factories
def ablate_heads(model, heads: Iterable[HeadRef], mode: str = "zero", *,
                 means: Mapping[str, torch.Tensor] | None = None,
                 donors: Mapping[str, torch.Tensor] | None = None) -> list[Hook]:
    """Hooks ablating each (layer, head) at ``blocks.L.attn.hook_z`` (one hook per layer).

    ``means[name]``: [2, n_heads, d_head] from :func:`~mi_massive.core.references.reference_means`; ``donors[name]``:
    [batch, pos, n_heads, d_head] from :func:`~mi_massive.core.references.resample_donors`. b_O is untouched.
    """
    check_mode(mode)
    grouped = check_heads(model, heads)
    hooks: list[Hook] = []
    for layer, hs in grouped.items():
        name = act_name("z", layer)
        hooks.append((name, replace_hook(mode, components=hs, mean=(means or {}).get(name),
                                         donor=(donors or {}).get(name))))
    return hooks


def _sublayer(model, layers, kind: str, mode: str,
              means: Mapping[str, torch.Tensor] | None, donors: Mapping[str, torch.Tensor] | None) -> list[Hook]:
    check_mode(mode)
    names = [act_name(kind, layer) for layer in check_layers(model, layers)]
    return [(name, replace_hook(mode, mean=(means or {}).get(name), donor=(donors or {}).get(name)))
            for name in names]


def ablate_attention(model, layers: Iterable[int] | None = None, mode: str = "zero", *,
                     means: Mapping[str, torch.Tensor] | None = None,
                     donors: Mapping[str, torch.Tensor] | None = None) -> list[Hook]:
    """Replace the whole attention sublayer output ``blocks.L.hook_attn_out`` (None = every layer).

    Zero mode removes b_O too: the sublayer then adds exactly nothing to the residual stream.
    """
    layers = range(model.cfg.n_layers) if layers is None else layers
    return _sublayer(model, layers, "attn_out", mode, means, donors)


def ablate_mlps(model, layers: Iterable[int] | None = None, mode: str = "zero", *,
                means: Mapping[str, torch.Tensor] | None = None,
                donors: Mapping[str, torch.Tensor] | None = None) -> list[Hook]:
    """Replace the MLP sublayer output ``blocks.L.hook_mlp_out`` (None = every layer; zero removes b_out)."""
    layers = range(model.cfg.n_layers) if layers is None else layers
    return _sublayer(model, layers, "mlp_out", mode, means, donors)


def ablate_neurons(model, neurons: Mapping[int, Sequence[int]], mode: str = "zero", *,
                   means: Mapping[str, torch.Tensor] | None = None,
                   donors: Mapping[str, torch.Tensor] | None = None) -> list[Hook]:
    """Replace single MLP neurons at ``blocks.L.mlp.hook_post`` (``{layer: [neuron, ...]}``; b_out kept)."""
    check_mode(mode)
    hooks = []
    for layer, ns in check_neurons(model, neurons).items():
        name = act_name("post", layer)
        hooks.append((name, replace_hook(mode, components=ns, mean=(means or {}).get(name),
                                         donor=(donors or {}).get(name))))
    return hooks


def per_row_head_ablation(layer: int, row_heads: Int[torch.Tensor, "batch"], mode: str = "zero", *,
                          mean: Float[torch.Tensor, "cls n_heads d_head"] | None = None) -> list[Hook]:
    """Batch row i loses head ``row_heads[i]`` of ``layer`` (-1: no ablation) -- the sweep's batching trick.

    Supports ``zero`` and ``mean`` (a per-row donor would need a donor batch; use :func:`ablate_heads`).
    """
    check_mode(mode)
    if mode == "resample":
        raise MiMassiveError("the batched sweep supports zero and mean ablation; use ablate_heads for resample")
    if mode == "mean" and mean is None:
        raise MiMassiveError("mean ablation needs reference means (see reference_means)")

    def hook_fn(z: Float[torch.Tensor, "batch pos n_heads d_head"], hook=None) -> torch.Tensor:
        row_heads_here = row_heads.to(z.device)
        rows = (row_heads_here >= 0).nonzero().squeeze(1)
        heads = row_heads_here[rows]
        out = z.clone()
        if mode == "zero":
            out[rows, :, heads] = 0.0
        else:
            m = mean.to(device=z.device, dtype=z.dtype)  # [2, H, dh]
            out[rows, 0, heads] = m[0, heads]
            out[rows, 1:, heads] = m[1, heads][:, None, :]
        return out

    return [(act_name("z", layer), hook_fn)]


def per_row_patch(name: str, rows: Int[torch.Tensor, "k"], index: Int[torch.Tensor, "k"],
                  clean: torch.Tensor, *, axis: int = 1) -> list[Hook]:
    """Batch row ``rows[i]`` takes the clean value at ``index[i]`` -- batched activation patching.

    ``axis=1``: a position (``x[r, p] = clean[0, p]``; resid/attn_out/mlp_out); ``axis=2``: a component
    at every position (``x[r, :, h] = clean[0, :, h]``; heads of hook_z). Other rows are untouched.
    """
    def hook_fn(x: torch.Tensor, hook=None) -> torch.Tensor:
        r, i = rows.to(x.device), index.to(x.device)
        c = clean[:, : x.shape[1]].to(device=x.device, dtype=x.dtype)
        out = x.clone()
        if axis == 1:
            out[r, i] = c[0, i]
        else:
            out[r, :, i] = c[0][:, i].transpose(0, 1)
        return out

    return [(name, hook_fn)]


@dataclass(frozen=True)
class Patch:
    """Patch ``hook`` with a clean activation at ``positions`` (None: all) and ``components`` (None: all)."""

    hook: str
    positions: tuple[int, ...] | None = None
    components: tuple[int, ...] | None = None


def patch_hooks(patches: Sequence[Patch], clean: Mapping[str, torch.Tensor]) -> list[Hook]:
    """Activation patching: put the clean run's values (``clean[hook]``, batch-aligned) into the run."""
    return [(p.hook, replace_hook("resample", components=p.components, positions=p.positions,
                                  donor=clean[p.hook])) for p in patches]
