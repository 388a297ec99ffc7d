"""Vision transformers (ViT, DINOv2 with and without registers, CLIP's vision tower) behind TransformerLens hook names.

>>> from mi_massive.core.corpus.images import image_corpus
>>> model = load_vision("toy-vit-reg", plant=[(1, 7, 5, 20000.0)])   # block 1, patch token at position 7, dim 5
>>> model.cfg.n_layers, model.cfg.n_tokens, model.tokenizer.decode([0]), model.tokenizer.decode([1]), model.tokenizer.decode([7])
(3, 21, '[CLS]', '[REG0]', 'patch(0,2)')
>>> corpus = image_corpus(model, n_images=2)
>>> _, acts = model.run_with_hooks_capture(corpus, ["blocks.1.hook_resid_post"])
>>> abs(float(acts["blocks.1.hook_resid_post"][0, 7, 5]) - 20000) < 50   # calibrated on a grey image
True

TransformerLens 4.3 bridges ``ViTModel`` / ``ViTForImageClassification`` / DeiT only (no DINOv2, no registers, no
stand-alone CLIP vision tower), so every vision model here goes through one path instead: the plain Hugging
Face model with torch forward hooks registered under TransformerLens-style names (:class:`VisionModel`).
Toys (:data:`VISION_TOYS`, built from a config with random weights, no download) and hub checkpoints
(``facebook/dinov2-with-registers-small``, ``openai/clip-vit-large-patch14``, ``google/vit-base-patch16-224``)
are wrapped by the same :func:`vision_from_hf`.

Hook points (every block L): ``blocks.L.hook_resid_pre`` (the block's input; ``blocks.0.hook_resid_pre`` are the
embeddings, after CLIP's pre-norm), ``blocks.L.hook_resid_post`` (the block's output, = HF ``hidden_states[L+1]``),
``blocks.L.attn.hook_pattern`` (attention probabilities [batch, head, query, key]; read-only) and
``ln_final.hook_out`` (the final norm). Hooks take TransformerLens' ``fn(tensor, hook) -> tensor | None``.

Tokens are positions: ``[CLS]``, the register tokens ``[REG0]``, ... (DINOv2 with registers), then one
``patch(row,col)`` per image patch. An image corpus (:func:`mi_massive.core.corpus.images.image_corpus`) keeps
the package's :class:`~mi_massive.core.corpus.Corpus` shape: the "token id" of position p of image i is
``i * n_tokens + p`` (i indexes the images registered with the model), so the one engine
(:func:`mi_massive.core.engine.run_capture`) and the scan run unchanged, and :attr:`VisionModel.tokenizer`
decodes an id to its position label.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from mi_massive.core.names import act_name
from mi_massive.errors import MiMassiveError

VISION_TOYS = ("toy-vit", "toy-vit-reg")
VISION_MODEL_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers", "clip", "clip_vision_model", "siglip",
                      "siglip_vision_model")
VISION_ANALYSES = ("scan", "heads", "intervene")  # what accepts a vision model; the others refuse in one line


@dataclass
class VisionConfig:
    """The shape facts the analyses read (``model.cfg``), TransformerLens field names where they exist.

    ``n_tokens`` = 1 (CLS) + ``n_registers`` + ``n_patches``; ``grid`` = patches per side; ``n_classes`` = the
    classifier head's labels (0: a bare encoder); ``image_mean``/``image_std`` normalise [0, 1] pixels.
    """

    model_name: str
    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    image_size: int
    patch_size: int
    grid: int
    n_registers: int
    n_classes: int
    image_mean: list[float]
    image_std: list[float]
    device: torch.device
    dtype: torch.dtype
    is_visual_model: bool = True
    gated_mlp: bool = False
    parallel_attn_mlp: bool = False
    positional_embedding_type: str = "standard"
    default_prepend_bos: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid

    @property
    def n_tokens(self) -> int:
        return 1 + self.n_registers + self.n_patches

    @property
    def n_ctx(self) -> int:
        return self.n_tokens

    @property
    def n_prefix(self) -> int:
        """Tokens before the first patch: CLS and the registers."""
        return 1 + self.n_registers


class VisionRefusal(MiMassiveError, AttributeError):
    """A language-model part asked of a vision model: a one-line user error that ``hasattr`` reads as absent."""


def _refusal(cfg: VisionConfig, what: str) -> VisionRefusal:
    return VisionRefusal(f"{cfg.model_name} is a vision model ({cfg.architecture}) without {what}; on vision models "
                         f"use {', '.join(VISION_ANALYSES)}")


class PositionLabels:
    """The vision "tokenizer": decodes a token id (``image * n_tokens + position``) to its position label.

    Anything else a text tokenizer has (encoding text, special tokens) is a one-line :class:`VisionRefusal`.
    """

    bos_token_id = None
    pad_token_id = 0

    def __init__(self, cfg: VisionConfig):
        self.cfg = cfg

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "cfg":
            raise AttributeError(name)
        raise _refusal(self.cfg, f"a text tokenizer ({name})")

    def __call__(self, *_: Any, **__: Any):
        raise _refusal(self.cfg, "a text tokenizer")

    encode = __call__

    def label(self, position: int) -> str:
        cfg = self.cfg
        if position == 0:
            return "[CLS]"
        if position < cfg.n_prefix:
            return f"[REG{position - 1}]"
        k = position - cfg.n_prefix
        return f"patch({k // cfg.grid},{k % cfg.grid})"

    def decode(self, ids: Sequence[int], **_: Any) -> str:
        return " ".join(self.label(int(i) % self.cfg.n_tokens) for i in ids)

    def kind(self, position: int) -> str:
        """``cls``, ``register`` or ``patch``."""
        return "cls" if position == 0 else ("register" if position < self.cfg.n_prefix else "patch")


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


class VisionModel(nn.Module):
    """A Hugging Face vision transformer with TransformerLens-style hook names (see the module docstring).

    ``model(ids)`` runs the images behind token ids (or ``model(pixel_values)``) and returns the classifier
    logits [batch, n_classes] when the model has a head, else the final representation [batch, tokens, d_model]
    (the final norm's output). ``hooks(fwd_hooks=...)`` is the context manager the engine uses.
    """

    def __init__(self, hf: nn.Module, cfg: VisionConfig, blocks: list[nn.Module], attentions: list[nn.Module],
                 final_norm: nn.Module | None, final_norm_in_forward: bool):
        super().__init__()
        self.original_model = hf
        self.cfg = cfg
        self.tokenizer = PositionLabels(cfg)
        self._blocks, self._attentions, self._final_norm = blocks, attentions, final_norm
        self._final_norm_in_forward = final_norm_in_forward
        self.images: list[torch.Tensor] = []  # pixel tensors [3, H, W], normalised, indexed by image id
        self.hook_dict: dict[str, tuple[str, int]] = {}
        for layer in range(cfg.n_layers):
            for kind in ("resid_pre", "resid_post", "pattern"):
                self.hook_dict[act_name(kind, layer)] = (kind, layer)
        if final_norm is not None:
            self.hook_dict["ln_final.hook_out"] = ("ln_final", -1)

    LM_ONLY = ("blocks", "embed", "unembed", "ln_final", "W_out", "W_in", "W_O", "W_Q", "W_K", "W_V", "b_out",
               "b_O", "W_U", "adapter", "to_tokens", "to_str_tokens", "generate")

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in VisionModel.LM_ONLY:
                raise _refusal(self.cfg, f"the language-model part '{name}' (TransformerBridge)") from None
            raise

    # ------------------------------------------------------------------ images behind token ids
    def register_images(self, pixels: torch.Tensor) -> list[int]:
        """Keep normalised images [n, 3, H, W]; returns their image ids (for :meth:`token_ids`)."""
        size = self.cfg.image_size
        if pixels.ndim != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (size, size):
            raise MiMassiveError(f"images must be [n, 3, {size}, {size}] for {self.cfg.model_name}, "
                                 f"got {list(pixels.shape)}")
        start = len(self.images)
        self.images += [p.detach().to("cpu", torch.float32) for p in pixels]
        return list(range(start, len(self.images)))

    def token_ids(self, image_id: int) -> list[int]:
        n = self.cfg.n_tokens
        return [image_id * n + p for p in range(n)]

    def pixels(self, ids: torch.Tensor) -> torch.Tensor:
        """The registered images behind token ids [batch, n_tokens] (each row one image, positions in order)."""
        n = self.cfg.n_tokens
        if ids.ndim != 2 or ids.shape[1] != n:
            raise MiMassiveError(f"{self.cfg.model_name} sees every position of an image: ids must be "
                                 f"[batch, {n}], got {list(ids.shape)}")
        image = torch.div(ids[:, 0], n, rounding_mode="floor")
        expected = image[:, None] * n + torch.arange(n, device=ids.device)
        if not torch.equal(ids, expected) or int(image.min()) < 0 or int(image.max()) >= len(self.images):
            raise MiMassiveError("token ids do not name registered images (use an image corpus: "
                                 "mi_massive.core.corpus.images.image_corpus)")
        return torch.stack([self.images[int(i)] for i in image.tolist()])

    # ------------------------------------------------------------------ forward and hooks
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x if x.is_floating_point() else self.pixels(x.cpu())
        pixels = pixels.to(self.cfg.device, self.cfg.dtype)
        out = self.original_model(pixel_values=pixels)
        logits = getattr(out, "logits", None)
        if logits is not None:
            return logits
        rep = out.last_hidden_state
        return self._final_norm(rep) if self._final_norm is not None and not self._final_norm_in_forward else rep

    def _register(self, name: str, fn: Callable) -> Any:
        if name not in self.hook_dict:
            raise MiMassiveError(f"unknown hook name {name} for vision model {self.cfg.model_name}")
        kind, layer = self.hook_dict[name]
        hook = SimpleNamespace(name=name)
        if kind == "resid_pre":
            def pre(_m, args, kwargs):
                positional = bool(args)
                x = args[0] if positional else kwargs["hidden_states"]
                new = fn(x, hook=hook)
                if new is None:
                    return None
                return ((new, *args[1:]), kwargs) if positional else (args, {**kwargs, "hidden_states": new})
            return self._blocks[layer].register_forward_pre_hook(pre, with_kwargs=True)
        if kind in ("resid_post", "ln_final"):
            module = self._blocks[layer] if kind == "resid_post" else self._final_norm

            def post(_m, _i, out):
                new = fn(_first(out), hook=hook)
                return None if new is None else _replace_first(out, new)
            return module.register_forward_hook(post)

        def pattern(_m, _i, out):
            weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
            if weights is None:
                raise MiMassiveError(f"{self.cfg.model_name}: attention weights are not returned (load it with "
                                     f"eager attention)")
            if fn(weights, hook=hook) is not None:
                raise MiMassiveError("attention patterns of vision models are read-only (hook_pattern)")
        return self._attentions[layer].register_forward_hook(pattern)

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, Callable]] = (), **_: Any) -> Iterator["VisionModel"]:
        """Register ``(hook name, fn)`` pairs for the duration of the block (TransformerLens' ``model.hooks``)."""
        handles = []
        try:
            for name, fn in fwd_hooks:
                handles.append(self._register(name, fn))
            yield self
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks_capture(self, corpus, names: Sequence[str], *, fwd_hooks=(), batch_size: int = 8):
        """(outputs, {name: tensor}) over a whole (small) corpus; a convenience over the engine's run_capture."""
        from mi_massive.core.engine import run_capture

        outs, caps = [], {n: [] for n in names}
        for _idx, ids, mask in corpus.batches(batch_size):
            out, acts = run_capture(self, ids, names, fwd_hooks=fwd_hooks, need_logits=True, mask=mask)
            outs.append(out)
            for n in names:
                caps[n].append(acts[n])
        return torch.cat(outs), {n: torch.cat(v) for n, v in caps.items()}


def is_vision(model) -> bool:
    """True for a :class:`VisionModel` (or anything whose ``cfg.is_visual_model`` is set)."""
    return bool(getattr(getattr(model, "cfg", None), "is_visual_model", False))


def refuse_vision(model, analysis: str, why: str = "it reads text tokens or a causal LM's modules") -> None:
    """Raise a one-line :class:`MiMassiveError` if ``model`` is a vision model (``analysis`` does not apply)."""
    if is_vision(model):
        raise MiMassiveError(f"{analysis} does not apply to the vision model {model.cfg.model_name} "
                             f"({model.cfg.architecture}): {why}; on vision models use "
                             f"{', '.join(VISION_ANALYSES)}")


# ------------------------------------------------------------------ building the wrapper (toys and hub alike)
def _recorded(hf: nn.Module, key: str):
    rec = getattr(type(hf), "_can_record_outputs", None) or {}
    target = rec.get(key)
    return getattr(target, "target_class", target)


def vision_from_hf(hf: nn.Module, *, name: str, image_mean: Sequence[float] | None = None,
                   image_std: Sequence[float] | None = None) -> VisionModel:
    """Wrap a Hugging Face vision transformer (ViT / DeiT / DINOv2 / DINOv2 with registers / CLIP / SigLIP vision
    tower, bare or with an image-classification head) as a :class:`VisionModel`; the one path for toys and hub."""
    hf.eval()
    config = hf.config
    vcfg = getattr(config, "vision_config", None) or config
    block_cls, attn_cls = _recorded(hf, "hidden_states"), _recorded(hf, "attentions")
    if block_cls is None or attn_cls is None:
        raise MiMassiveError(f"{type(hf).__name__} is not a supported vision transformer (no per-layer outputs)")
    blocks = [m for m in hf.modules() if isinstance(m, block_cls)]
    attentions = [m for m in hf.modules() if isinstance(m, attn_cls)]
    n_layers = int(vcfg.num_hidden_layers)
    if len(blocks) != n_layers or len(attentions) != n_layers:
        raise MiMassiveError(f"{type(hf).__name__}: found {len(blocks)} blocks / {len(attentions)} attention modules "
                             f"for {n_layers} layers")
    final_norm, in_forward = None, True
    for owner in (hf, getattr(hf, "vit", None), getattr(hf, "dinov2", None), getattr(hf, "deit", None),
                  getattr(hf, "vision_model", None)):
        if owner is None:
            continue
        if isinstance(getattr(owner, "layernorm", None), nn.Module):
            final_norm = owner.layernorm
        elif isinstance(getattr(owner, "post_layernorm", None), nn.Module):  # CLIP/SigLIP: pooled output only
            final_norm, in_forward = owner.post_layernorm, False
    attn_impl = getattr(config, "_attn_implementation", None)
    if attn_impl not in (None, "eager"):
        hf.set_attn_implementation("eager")  # attention probabilities are needed (hook_pattern)
    patch = int(vcfg.patch_size)
    size = int(vcfg.image_size)
    n_registers = int(getattr(vcfg, "num_register_tokens", 0) or 0)
    labels = getattr(config, "id2label", None) or {}
    n_classes = len(labels) if getattr(hf, "classifier", None) is not None else 0
    param = next(hf.parameters())
    d_model = int(vcfg.hidden_size)
    cfg = VisionConfig(
        model_name=name, architecture=type(hf).__name__, n_layers=n_layers, d_model=d_model,
        n_heads=int(vcfg.num_attention_heads), d_head=d_model // int(vcfg.num_attention_heads),
        d_mlp=int(getattr(vcfg, "intermediate_size", 0) or d_model * int(getattr(vcfg, "mlp_ratio", 4))),
        image_size=size, patch_size=patch, grid=size // patch, n_registers=n_registers, n_classes=n_classes,
        image_mean=list(image_mean or [0.5, 0.5, 0.5]), image_std=list(image_std or [0.5, 0.5, 0.5]),
        device=param.device, dtype=param.dtype)
    return VisionModel(hf, cfg, blocks, attentions, final_norm, in_forward)


TOY_VISION_SHAPE = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256,
                    "image_size": 32, "patch_size": 8}


def build_vision_toy_hf(kind: str, seed: int = 0) -> nn.Module:
    """The plain HF model of a vision toy, random weights from ``seed``: ``toy-vit`` is a ``ViTForImageClassification``
    (CLS token, 16 patches, a 5-way head over the synthetic image kinds), ``toy-vit-reg`` a
    ``Dinov2WithRegistersModel`` (CLS, 4 registers, 16 patches; a bare encoder). 3 blocks, d_model 64, 32 x 32 images.

    >>> type(build_vision_toy_hf("toy-vit")).__name__, type(build_vision_toy_hf("toy-vit-reg")).__name__
    ('ViTForImageClassification', 'Dinov2WithRegistersModel')
    """
    import transformers

    from mi_massive.core.corpus.images import IMAGE_KINDS  # the head's classes: the synthetic image kinds

    torch.manual_seed(seed)
    if kind == "toy-vit":
        labels = {i: k for i, k in enumerate(IMAGE_KINDS)}
        cfg = transformers.ViTConfig(**TOY_VISION_SHAPE, id2label=labels, label2id={k: i for i, k in labels.items()},
                                     attn_implementation="eager")
        model = transformers.ViTForImageClassification(cfg)
    elif kind == "toy-vit-reg":
        cfg = transformers.Dinov2WithRegistersConfig(**TOY_VISION_SHAPE, num_register_tokens=4,
                                                     attn_implementation="eager")
        model = transformers.Dinov2WithRegistersModel(cfg)
    else:
        raise MiMassiveError(f"unknown vision toy '{kind}'; choose one of {', '.join(VISION_TOYS)}")
    model.config.architectures = [type(model).__name__]
    return model.eval()


# ------------------------------------------------------------------ planting a massive entry
def _vision_parts(hf: nn.Module) -> dict[str, Any]:
    """The modules planting edits, for the ViT and DINOv2 (with or without registers) layouts."""
    root = getattr(hf, "vit", None) or getattr(hf, "dinov2", None) or hf
    emb = root.embeddings
    blocks = list(getattr(root, "layers", None) or root.encoder.layer)
    if hasattr(blocks[0], "layernorm_after"):  # ViT
        return {"emb": emb, "blocks": blocks, "o": [b.attention.o_proj for b in blocks],
                "fc1": [b.mlp.fc1 for b in blocks], "fc2": [b.mlp.fc2 for b in blocks],
                "ln2": [b.layernorm_after for b in blocks]}
    if hasattr(blocks[0], "norm2") and hasattr(blocks[0].mlp, "fc1"):  # DINOv2 (plain MLP)
        return {"emb": emb, "blocks": blocks, "o": [b.attention.o_proj for b in blocks],
                "fc1": [b.mlp.fc1 for b in blocks], "fc2": [b.mlp.fc2 for b in blocks],
                "ln2": [b.norm2 for b in blocks]}
    raise MiMassiveError(f"cannot plant a massive activation in {type(hf).__name__}: ViT and DINOv2 layouts only")


@dataclass(frozen=True)
class PlantedPatch:
    """A massive entry written into a vision toy: block ``layer``'s output at token ``position``, ``dim``."""

    layer: int
    position: int
    dim: int
    value: float
    indicator_dim: int
    neuron: int


@torch.no_grad()
def plant_vision_massive(hf: nn.Module, layer: int, position: int, dim: int, value: float, *,
                         indicator_dim: int | None = None, neuron: int = 0) -> PlantedPatch:
    """Edit a ViT / DINOv2 so block ``layer`` writes a massive value into ``dim`` at token ``position`` only.

    As for the language toys (:func:`mi_massive.core.loading.toy.plant_massive_activation`): residual ``dim``
    and a marker dim are cleared everywhere (patch projection, CLS / register tokens, position embeddings,
    every attention and MLP write); the marker is written into the position embedding of ``position`` (or the
    CLS / register token), and one MLP neuron of block ``layer`` reads only the marker (GELU with a large
    negative bias: exactly 0 elsewhere) and writes only ``dim``. Its output is calibrated on a mid-grey image
    so that the entry is ``value`` there; on other images it is ``value`` to about 1e-3 (the pre-MLP LayerNorm
    of the marked token is dominated by the marker). Every other token holds exactly 0 in ``dim``.
    """
    parts = _vision_parts(hf)
    emb, blocks = parts["emb"], parts["blocks"]
    d_model = hf.config.hidden_size
    n_reg = int(getattr(hf.config, "num_register_tokens", 0) or 0)
    n_tokens = 1 + n_reg + (hf.config.image_size // hf.config.patch_size) ** 2
    if not 0 <= layer < len(blocks):
        raise MiMassiveError(f"layer {layer} out of range: the model has {len(blocks)} blocks")
    if not 0 <= position < n_tokens:
        raise MiMassiveError(f"position {position} out of range: the model sees {n_tokens} tokens")
    indicator_dim = (dim + d_model // 2) % d_model if indicator_dim is None else indicator_dim
    if not (0 <= dim < d_model and 0 <= indicator_dim < d_model) or indicator_dim == dim:
        raise MiMassiveError(f"dim {dim} / indicator_dim {indicator_dim}: two different dims below {d_model}")
    cleared = [dim, indicator_dim]
    marker = 30.0
    conv = emb.patch_embeddings.projection
    conv.weight[cleared] = 0.0
    conv.bias[cleared] = 0.0
    emb.cls_token[..., cleared] = 0.0
    emb.position_embeddings[..., cleared] = 0.0
    if n_reg:
        emb.register_tokens[..., cleared] = 0.0
    if position == 0:
        emb.cls_token[0, 0, indicator_dim] = marker
    elif position <= n_reg:
        emb.register_tokens[0, position - 1, indicator_dim] = marker
    else:
        emb.position_embeddings[0, position - n_reg, indicator_dim] = marker
    for proj in (*parts["o"], *parts["fc2"]):
        proj.weight[cleared, :] = 0.0
        if proj.bias is not None:
            proj.bias[cleared] = 0.0
    fc1, fc2, ln2 = parts["fc1"][layer], parts["fc2"][layer], parts["ln2"][layer]
    fc1.weight[neuron, :] = 0.0
    fc1.weight[neuron, indicator_dim] = 10.0
    fc1.bias[neuron] = -30.0  # LayerNorm of the marked token is ~sqrt(d_model) at the marker, ~0 elsewhere
    fc2.weight[:, neuron] = 0.0
    fc2.weight[dim, neuron] = 1.0
    ln2.weight[indicator_dim] = 1.0
    ln2.bias[indicator_dim] = 0.0
    grey = torch.zeros(1, 3, hf.config.image_size, hf.config.image_size, device=conv.weight.device,
                       dtype=conv.weight.dtype)
    got: dict[str, torch.Tensor] = {}
    handle = blocks[layer].register_forward_hook(lambda _m, _i, o: got.setdefault("h", _first(o)))
    try:
        hf(pixel_values=grey)
    finally:
        handle.remove()
    written = float(got["h"][0, position, dim])
    if not written > 1.0:
        raise MiMassiveError("planting failed: the marker neuron did not fire")
    fc2.weight[dim, neuron] = value / written
    return PlantedPatch(layer=layer, position=position, dim=dim, value=float(value), indicator_dim=indicator_dim,
                        neuron=neuron)


# ------------------------------------------------------------------ loading
def _processor_stats(name: str) -> tuple[list[float] | None, list[float] | None]:
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(name)
        return list(proc.image_mean), list(proc.image_std)
    except Exception:  # noqa: BLE001 (no processor: the [0.5] defaults)
        return None, None


def load_vision_hf(spec: str, *, dtype: torch.dtype = torch.float32, device: str | None = "cpu") -> nn.Module:
    """A hub name or local directory of a vision transformer as a plain HF model (eager attention, eval mode).

    CLIP / SigLIP checkpoints (text + vision) load their vision tower only (``CLIPVisionModel``); checkpoints
    whose ``architectures`` name an image classifier load with their head; others load the bare encoder.
    """
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(spec)
    except Exception as err:  # noqa: BLE001
        raise MiMassiveError(f"cannot read a vision model config from '{spec}': "
                             f"{str(err).splitlines()[0][:160]}") from err
    kind = config.model_type
    if kind not in VISION_MODEL_TYPES:
        raise MiMassiveError(f"'{spec}' is a {kind} model, not a vision transformer ({', '.join(VISION_MODEL_TYPES)})")
    kwargs = {"attn_implementation": "eager", "dtype": dtype}
    if kind in ("clip", "clip_vision_model"):
        cls = transformers.CLIPVisionModel
    elif kind in ("siglip", "siglip_vision_model"):
        cls = transformers.SiglipVisionModel
    elif any(a.endswith("ForImageClassification") for a in (config.architectures or [])):
        cls = transformers.AutoModelForImageClassification
    else:
        cls = transformers.AutoModel
    try:
        hf = cls.from_pretrained(spec, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise MiMassiveError(f"cannot load the vision model '{spec}': {str(err).splitlines()[0][:160]}") from err
    return hf.to(device or "cpu").eval()


def load_vision(spec: str, *, seed: int = 0, plant: Sequence[tuple[int, int, int, float]] | None = None,
                dtype: str | torch.dtype = torch.float32, device: str | None = "cpu") -> VisionModel:
    """A vision transformer as a :class:`VisionModel`: a toy (:data:`VISION_TOYS`), a hub name or a local directory.

    ``plant`` lists (layer, position, dim, value) massive entries (toys and any ViT / DINOv2 layout;
    :func:`plant_vision_massive`). Provenance (``model_info``) is filled as for the language models.
    """
    from mi_massive.core.loading.bridge import ModelInfo, architecture_of, attach_info
    from mi_massive.core.loading.specs import parse_dtype

    torch_dtype = parse_dtype(dtype)
    if spec in VISION_TOYS:
        hf = build_vision_toy_hf(spec, seed=seed)
        mean = std = None
        source, fingerprint = "toy", f"toy:{spec}:seed={seed}"
    else:
        from pathlib import Path

        from mi_massive.core.env import hub_reachable

        if not Path(spec).expanduser().exists() and not hub_reachable():
            raise MiMassiveError(f"vision model '{spec}': not a toy ({', '.join(VISION_TOYS)}) or a local path, "
                                 f"and the model hub is unreachable (offline)")
        hf = load_vision_hf(spec, dtype=torch.float32, device="cpu")
        mean, std = _processor_stats(spec)
        source = "hf-dir" if Path(spec).expanduser().exists() else "hub"
        fingerprint = f"{source}:{spec}@{getattr(hf.config, '_commit_hash', None) or 'unknown'}"
    planted = [plant_vision_massive(hf, *p) for p in (plant or [])]
    fingerprint += "".join(f":plant({p.layer},{p.position},{p.dim},{p.value:g})" for p in planted)
    hf = hf.to(device or ("cuda" if torch.cuda.is_available() else "cpu"), torch_dtype)
    model = vision_from_hf(hf, name=spec, image_mean=mean, image_std=std)
    cfg = model.cfg
    info = ModelInfo(spec=spec, source=source, name=spec, architecture=architecture_of(hf), fingerprint=fingerprint,
                     dtype=str(torch_dtype).replace("torch.", ""), device=str(cfg.device), n_layers=cfg.n_layers,
                     d_model=cfg.d_model, n_heads=cfg.n_heads, n_ctx=cfg.n_tokens,
                     extra={"planted": [p.__dict__ for p in planted], "n_registers": cfg.n_registers,
                            "grid": cfg.grid, "n_classes": cfg.n_classes, "vision": True})
    return attach_info(model, info)
