"""Wrap a Hugging Face causal LM in a TransformerBridge with HookedTransformer hook names and raw weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from mi_massive.errors import MiMassiveError


@dataclass
class ModelInfo:
    """Provenance of a loaded model, recorded in every result file.

    ``device`` is where the inputs go (the embedding's device; see ``provenance["device"]`` for the
    whole placement). ``fingerprint`` identifies the weights: ``sha256:<hex>`` of the source file(s), ``hub:<revision>``
    for hub downloads, or ``toy:<kind>:seed=<n>`` (plus planted edits) for in-process toys.
    """

    spec: str
    source: str  # "alias", "gguf", "hf-dir", "hub", "toy", "variant", "module"
    name: str
    architecture: str
    fingerprint: str
    dtype: str
    device: str
    n_layers: int
    d_model: int
    n_heads: int
    n_ctx: int
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def architecture_of(hf_model: torch.nn.Module) -> str:
    """The TransformerLens adapter key (e.g. ``LlamaForCausalLM``); GGUF loads leave ``architectures`` empty."""
    from transformer_lens.model_bridge.sources.transformers import determine_architecture_from_hf_config

    archs = getattr(hf_model.config, "architectures", None) or []
    return archs[0] if archs else determine_architecture_from_hf_config(hf_model.config)


def bridge_from_hf(
    hf_model: torch.nn.Module,
    tokenizer: Any,
    *,
    name: str,
    post_adapter_hook: Callable[[Any], None] | None = None,
):
    """Build a TransformerBridge around ``hf_model`` (modified in place) in compatibility mode.

    ``no_processing=True`` is essential: the default processing folds LayerNorm gains into the
    weights and centres every residual write (subtracting the mean over d_model). That moves every
    residual coordinate and erases the "1000x the median" signature this package measures, so all
    hook values here are the model's own raw numbers, equal to plain ``transformers`` hidden states.

    ``post_adapter_hook`` lets variants (KV bias, DyT) swap bridge components so the bridge computes
    what the patched HF module computes (the bridge re-implements attention and LayerNorm itself).
    """
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    if getattr(tokenizer, "name_or_path", None) in (None, ""):
        raise MiMassiveError("the tokenizer must be saved to a directory first (TransformerBridge reloads it by path)")
    hf_model.eval()
    kwargs = {"hf_config": hf_model.config, "tokenizer": tokenizer, "model_name": name}
    if post_adapter_hook is not None:
        kwargs["post_adapter_hook"] = post_adapter_hook
    bridge = build_bridge_from_module(hf_model, architecture_of(hf_model), **kwargs)
    bridge.enable_compatibility_mode(no_processing=True)
    return bridge.eval()


def attach_info(bridge, info: ModelInfo):
    """Store provenance on the bridge (read back with :func:`model_info`)."""
    bridge.mi_massive_info = info
    return bridge


def model_info(bridge) -> ModelInfo:
    """Provenance of a bridge built by :func:`mi_massive.load_model`; a minimal record otherwise."""
    info = getattr(bridge, "mi_massive_info", None)
    if isinstance(info, ModelInfo):
        return info
    cfg = bridge.cfg
    return ModelInfo(
        spec=str(getattr(cfg, "model_name", "unknown")), source="module", name=str(getattr(cfg, "model_name", "")),
        architecture=type(getattr(bridge, "original_model", bridge)).__name__, fingerprint="unknown",
        dtype=str(cfg.dtype).replace("torch.", ""), device=str(cfg.device), n_layers=cfg.n_layers,
        d_model=cfg.d_model, n_heads=cfg.n_heads, n_ctx=cfg.n_ctx,
    )


def describe(bridge, *, spec: str, source: str, name: str, fingerprint: str, path: str | None = None,
             extra: dict[str, Any] | None = None) -> ModelInfo:
    """Build the :class:`ModelInfo` of a freshly built bridge."""
    from mi_massive.core.devices import input_device

    cfg = bridge.cfg
    first_param = next(bridge.original_model.parameters())
    return ModelInfo(
        spec=spec, source=source, name=name, architecture=architecture_of(bridge.original_model),
        fingerprint=fingerprint, dtype=str(first_param.dtype).replace("torch.", ""),
        device=str(input_device(bridge)), n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
        n_ctx=cfg.n_ctx, path=path, extra=dict(extra or {}),
    )
