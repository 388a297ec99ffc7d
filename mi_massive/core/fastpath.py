"""The residual fast path: block outputs from the plain Hugging Face forward, at the speed of ``transformers``.

>>> import mi_massive as mm
>>> from mi_massive.core.fastpath import run_residual
>>> model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
>>> ids = torch.tensor([[0, 5, 6, 7]])
>>> acts = run_residual(model, ids, ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"])
>>> round(float(acts["blocks.1.hook_resid_post"][0, 0, 5]))
3000
>>> pick_route(model, ["blocks.1.hook_resid_post"]), pick_route(model, ["blocks.1.attn.hook_z"])
('hf', 'bridge')

Why: in compatibility mode every TransformerLens attention bridge re-implements attention (mask
building, several extra passes over [batch, heads, q, k]), which makes a bridge forward ~1.9x a
plain ``transformers`` forward with SDPA attention. A capture that asks only for the residual
stream (``blocks.L.hook_resid_pre`` / ``blocks.L.hook_resid_post``) with no intervention hooks and
no logits does not need that re-implementation. The *route* ``"hf"`` then runs the bridge's own
Hugging Face model (``model.original_model``, the same parameters, no copy):

* the bridge components that TransformerLens put into the HF module tree are swapped back to their
  original modules for the duration of the call (and always restored), so the forward is exactly
  what ``transformers`` runs;
* an ``"eager"`` attention implementation is switched to ``"sdpa"`` for the call when the model
  supports it (and has no attention logit soft-capping, which SDPA cannot express) and restored;
  a custom implementation (the KV-bias variant's ``"kv_bias"``) is kept as it is;
* block ``L``'s output is read by a forward hook on HF decoder layer ``L`` (= ``blocks.L.hook_resid_post``
  = ``blocks.{L+1}.hook_resid_pre``), the embeddings by a pre-hook on decoder layer 0 (its input:
  position embeddings added for GPT-2, the sqrt(d_model) scale applied for Gemma), and the pass
  stops right after the last needed layer (no final norm, no unembedding);
* the real-token mask is passed as ``attention_mask``, so right-padded batches give the values of
  each sequence run alone at its real positions.

Values equal the bridge route to float rounding: SDPA and eager attention sum in a different
order; measured differences are in ``docs/fastpath.md`` (relative 1e-6 on the toys, see
``tests/core/test_fastpath.py``). The route is ``"bridge"`` whenever a hook other than a residual
hook is requested, ``fwd_hooks`` or logits are needed, a hook is attached to the bridge
permanently (``model.add_hook``), or it is forced: ``route="bridge"`` in
:func:`mi_massive.core.engine.run_capture`, or the environment variable ``MI_MASSIVE_ROUTE=bridge``.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from jaxtyping import Bool, Int
from torch import nn

from mi_massive.core.devices import input_device
from mi_massive.errors import MiMassiveError

ROUTE_ENV = "MI_MASSIVE_ROUTE"
ROUTES = ("auto", "hf", "bridge")
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


class _StopHF(Exception):
    """Raised in a decoder-layer hook once the last needed block output is captured."""


def _bridge_component_type():
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    return GeneralizedComponent


def residual_sources(names: Sequence[str], n_layers: int) -> dict[str, int] | None:
    """Map residual hook names to HF decoder-layer outputs: -1 = input of layer 0; None if any is not residual.

    >>> residual_sources(["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_post"], 4)
    {'blocks.0.hook_resid_pre': -1, 'blocks.2.hook_resid_pre': 1, 'blocks.3.hook_resid_post': 3}
    >>> residual_sources(["blocks.0.hook_resid_mid"], 4) is None
    True
    """
    out: dict[str, int] = {}
    for name in names:
        match = _RESID.match(name)
        if match is None:
            return None
        layer = int(match.group(1))
        source = layer - 1 if match.group(2) == "pre" else layer
        if not -1 <= source < n_layers:
            return None
        out[name] = source
    return out


def _has_user_hooks(model) -> bool:
    """True when a torch hook is attached to a bridge component or hook point (``model.add_hook``,
    ``register_forward_pre_hook`` on ``model.blocks[L]``, an enclosing ``model.hooks(...)``): those
    run only on the bridge route. Hooks on the original HF modules run on both routes."""
    component = _bridge_component_type()
    hook_dict = getattr(model, "hook_dict", {})
    if any(hp._forward_hooks or hp._forward_pre_hooks for hp in hook_dict.values()):
        return True
    bridges = [m for m in model.modules() if isinstance(m, component)]
    hooked = [m for m in bridges if m._forward_hooks or m._forward_pre_hooks]
    if not hooked:
        return False
    # TransformerLens' own capture hooks (BlockBridge wires them on ln1/ln2 at the first bridge forward)
    internal = {h.id for m in bridges for h in getattr(m, "_capture_hook_handles", ())}
    return any(set(m._forward_hooks) - internal or set(m._forward_pre_hooks) - internal for m in hooked)


def _hf_layers(model) -> list[nn.Module] | None:
    hf = getattr(model, "original_model", None)
    blocks = getattr(model, "blocks", None)
    if hf is None or blocks is None:
        return None
    layers = [getattr(block, "original_component", None) for block in blocks]
    return None if any(layer is None for layer in layers) else layers


def requested_route(route: str | None = None) -> str:
    """The route asked for: the argument (default ``"auto"``), except that ``$MI_MASSIVE_ROUTE=bridge`` forces hooks.

    >>> requested_route("bridge"), requested_route(None) in ROUTES
    ('bridge', True)
    """
    env = (os.environ.get(ROUTE_ENV) or "").strip().lower()
    if env and env not in ROUTES:
        raise MiMassiveError(f"unknown route {env!r} (from ${ROUTE_ENV}); choose one of {', '.join(ROUTES)}")
    value = "bridge" if env == "bridge" else (route or env or "auto").strip().lower()
    if value not in ROUTES:
        raise MiMassiveError(f"unknown route {value!r}; choose one of {', '.join(ROUTES)}")
    return value


def pick_route(model, names: Sequence[str], *, fwd_hooks: Sequence = (), need_logits: bool = False,
               route: str | None = None) -> str:
    """``"hf"`` when the residual fast path can provide ``names`` exactly, else ``"bridge"``.

    ``route="hf"`` insists on the fast path and raises when it cannot serve the request.
    """
    asked = requested_route(route)
    if asked == "bridge":
        return "bridge"
    reasons = []
    if fwd_hooks:
        reasons.append("intervention hooks are given")
    if need_logits:
        reasons.append("logits are needed")
    if residual_sources(names, getattr(model.cfg, "n_layers", 0)) is None:
        reasons.append("a requested hook is not a residual hook")
    if _hf_layers(model) is None:
        reasons.append("the model is not a bridge over a Hugging Face model")
    elif _has_user_hooks(model):
        reasons.append("a hook is attached to the bridge")
    if not reasons:
        return "hf"
    if asked == "hf":
        raise MiMassiveError(f"route 'hf' cannot serve this capture: {reasons[0]}")
    return "bridge"


def _sdpa_ok(hf: nn.Module) -> bool:
    config = hf.config
    if getattr(config, "attn_logit_softcapping", None) or getattr(getattr(config, "text_config", None),
                                                                  "attn_logit_softcapping", None):
        return False
    return bool(getattr(hf, "_supports_sdpa", False))


@contextmanager
def plain_hf(model, *, attention: str = "sdpa") -> Iterator[nn.Module]:
    """The bridge's HF model with every bridge component swapped back to its original module.

    >>> import mi_massive as mm
    >>> model = mm.load_toy("toy-llama")
    >>> with plain_hf(model) as hf:
    ...     type(hf.model.layers[0]).__name__, hf.config._attn_implementation
    ('LlamaDecoderLayer', 'sdpa')
    >>> type(model.original_model.model.layers[0]).__name__, model.original_model.config._attn_implementation
    ('BlockBridge', 'eager')

    ``attention="sdpa"`` switches an eager model to SDPA for the duration (when supported);
    ``attention="keep"`` keeps the model's own implementation. Everything is restored on exit,
    also after an error.
    """
    hf = model.original_model
    component = _bridge_component_type()
    swaps: list[tuple[nn.Module, str, nn.Module]] = []

    def walk(module: nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            original = child._modules.get("_original_component") if isinstance(child, component) else None
            if original is not None:
                swaps.append((module, name, child))
                module._modules[name] = original
                walk(original)
            else:
                walk(child)

    old_attn = hf.config._attn_implementation
    try:
        walk(hf)
        if attention == "sdpa" and old_attn == "eager" and _sdpa_ok(hf):
            hf.config._attn_implementation = "sdpa"
        yield hf
    finally:
        for parent, name, bridge in reversed(swaps):
            parent._modules[name] = bridge
        if hf.config._attn_implementation != old_attn:
            hf.config._attn_implementation = old_attn


@torch.no_grad()
def run_residual(model, ids: Int[torch.Tensor, "batch pos"], names: Sequence[str], *,
                 mask: Bool[torch.Tensor, "batch pos"] | None = None,
                 attention: str = "sdpa") -> dict[str, torch.Tensor]:
    """Residual-stream activations at ``names`` from one plain HF forward; {name: detached tensor [batch, pos, d_model]}.

    Tensors are in the model's dtype and on the device where each layer ran (a sharded model's
    layers stay on their own GPU). Raises :class:`MiMassiveError` when a name is not a residual hook.
    """
    layers = _hf_layers(model)
    sources = residual_sources(names, len(layers) if layers else 0)
    if layers is None or sources is None:
        raise MiMassiveError("the residual fast path needs a bridge over an HF model and residual hook names")
    wanted = set(sources.values())
    last = max(wanted)
    got: dict[int, torch.Tensor] = {}
    handles = []

    def pre_hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        got[-1] = hidden.detach()
        if last == -1:
            raise _StopHF

    def post_hook(index):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            got[index] = hidden.detach()
            if index == last:
                raise _StopHF
        return hook

    embed_device = input_device(model)
    ids = ids.to(embed_device)
    attention_mask = None if mask is None else mask.to(device=embed_device, dtype=torch.long)
    with plain_hf(model, attention=attention) as hf:
        try:
            if -1 in wanted:
                handles.append(layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
            for index in sorted(wanted - {-1}):
                handles.append(layers[index].register_forward_hook(post_hook(index)))
            try:
                hf.base_model(input_ids=ids, attention_mask=attention_mask, use_cache=False)
            except _StopHF:
                pass
        finally:
            for handle in handles:
                handle.remove()
    if missing := wanted - set(got):
        raise MiMassiveError(f"decoder layer output(s) never computed: {sorted(missing)}")
    return {name: got[source] for name, source in sources.items()}
