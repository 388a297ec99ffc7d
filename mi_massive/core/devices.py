"""Devices: which device a model is loaded on, where its inputs go, how much fits, what is recorded.

>>> plan = resolve_placement("cpu")
>>> plan.device, plan.device_map, plan.line()
('cpu', None, 'device: cpu (requested)')

Rules (one place for all of them):

* ``device=None`` picks CUDA when present, else Apple MPS, else the CPU (:func:`pick_device`);
  an unknown device, or one this machine or torch build lacks, is a one-line :class:`MiMassiveError`.
* ``device_map`` (``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"`` or a dict
  ``{module name: GPU index | "cpu"}``) and ``n_devices=k`` shard a model through TransformerLens'
  own resolver (:func:`transformer_lens.utilities.multi_gpu.resolve_device_map`) and accelerate --
  never a home-made splitter. ``device`` and ``device_map`` exclude each other.
* Without CUDA a *string* ``device_map`` has nothing to spread over: the model is loaded whole on the
  picked device (CPU or MPS) and :attr:`Placement.note` says so in one line (printed by the CLI).
  A dict map is passed to accelerate as given (an all-CPU map works on any machine); ``n_devices > 1``
  without that many GPUs is an error.
* A model's inputs go to its embedding's device (:func:`input_device`); on a sharded model each
  block's activations stay on that block's GPU.
* Batches are bounded by free device memory (:func:`auto_batch_size`); :func:`is_out_of_memory`
  recognises the error that the engine's back-off catches.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mi_massive.errors import MiMassiveError

DEVICE_TYPES = ("cpu", "cuda", "mps")
STRING_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
CPU_TOKENS_PER_BATCH = 2048  # the CPU default: about 2,048 tokens per forward pass


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device() -> str:
    """``"cuda"`` when CUDA is present, else ``"mps"`` (Apple), else ``"cpu"``.

    >>> pick_device() in ("cuda", "mps", "cpu")
    True
    """
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def check_device(device: str | torch.device) -> str:
    """The canonical name of ``device`` (``"cpu"``, ``"cuda:0"``, ``"mps"``), or a one-line error.

    >>> check_device("cpu")
    'cpu'

    ``"cuda"`` becomes ``"cuda:<current device>"``. Errors name what is missing: an unknown type, no
    CUDA in this torch build or on this machine, a GPU index past the count, MPS unavailable.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise MiMassiveError(f"unknown device '{device}'; use cpu, cuda, cuda:<index> or mps") from err
    if dev.type not in DEVICE_TYPES:
        raise MiMassiveError(f"unsupported device '{device}'; use cpu, cuda, cuda:<index> or mps")
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "mps":
        if not _mps_available():
            raise MiMassiveError(f"device '{device}' requested but torch.backends.mps.is_available() is False")
        return "mps"
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA" if torch.version.cuda is None
               else f"this torch build has CUDA {torch.version.cuda} but no GPU is visible")
        raise MiMassiveError(f"device '{device}' requested but torch.cuda.is_available() is False; {why}")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= count:
        raise MiMassiveError(f"device '{device}' requested but only {count} CUDA device(s) are visible")
    return f"cuda:{index}"


def parse_device_map(value: str | dict | None) -> str | dict | None:
    """A ``--device-map`` value: a strategy name, a JSON object, or a path to a JSON file.

    >>> parse_device_map('{"model.embed_tokens": "cpu", "model.layers": "cpu"}')
    {'model.embed_tokens': 'cpu', 'model.layers': 'cpu'}
    >>> parse_device_map("auto")
    'auto'
    """
    if value is None or isinstance(value, dict):
        return value
    text = str(value).strip()
    if text in STRING_MAPS:
        return text
    if text.startswith("{"):
        source = text
    elif Path(text).is_file():
        source = Path(text).read_text(encoding="utf-8")
    else:
        raise MiMassiveError(f"unknown device map '{value}'; use {', '.join(STRING_MAPS)}, a JSON object "
                             f"or a JSON file")
    try:
        parsed = json.loads(source)
    except json.JSONDecodeError as err:
        raise MiMassiveError(f"device map is not valid JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(parsed, dict) or not parsed:
        raise MiMassiveError("a device map must be a non-empty JSON object {module name: device}")
    return parsed


@dataclass(frozen=True)
class Placement:
    """Where a model goes: one ``device``, or a ``device_map`` (+ ``max_memory``) for accelerate.

    ``device`` is the single target (or ``None`` when sharded: the embedding's device is known only
    after loading); ``how`` is ``"auto"`` (picked), ``"requested"``, ``"device_map"`` or
    ``"n_devices"``; ``note`` is a one-line remark (e.g. a string map without CUDA).
    """

    device: str | None
    device_map: str | dict | None = None
    max_memory: dict | None = None
    how: str = "requested"
    note: str | None = None
    n_devices: int | None = None

    @property
    def sharded(self) -> bool:
        return self.device_map is not None

    def line(self, model=None) -> str:
        """The one status line the CLI prints, e.g. ``device: cpu (auto)``."""
        where = str(input_device(model)) if model is not None else (self.device or "?")
        if self.sharded:
            n = getattr(getattr(model, "cfg", None), "n_devices", None) if model is not None else None
            extra = f", device_map={self.device_map if isinstance(self.device_map, str) else 'dict'}"
            extra += f", {n} devices" if n else ""
            return f"device: {where} (embedding{extra})"
        return f"device: {where} ({self.how})"


def resolve_placement(device: str | torch.device | None = None, device_map: str | dict | None = None,
                      n_devices: int | None = None, max_memory: dict | None = None) -> Placement:
    """Check the device options and decide where the model goes (see the module rules).

    >>> resolve_placement(device_map="auto").device in ("cuda:0", "mps", "cpu")
    True
    >>> resolve_placement(device_map={"": "cpu"}).device_map
    {'': 'cpu'}
    """
    device_map = parse_device_map(device_map)
    if n_devices is not None and n_devices < 1:
        raise MiMassiveError(f"n_devices must be a positive integer, got {n_devices}")
    sharding = device_map is not None or (n_devices or 1) > 1
    if device is not None and sharding:
        raise MiMassiveError("give a device or a device map / n_devices > 1, not both")
    if not sharding:
        if device is None:
            return Placement(check_device(pick_device()), how="auto")
        return Placement(check_device(device), how="requested")
    if isinstance(device_map, str) and not torch.cuda.is_available():
        target = check_device(pick_device())
        return Placement(target, how="auto", note=f"device_map '{device_map}' without CUDA: the whole model "
                                                  f"is loaded on {target}")
    from transformer_lens.utilities.multi_gpu import _validate_device_map_values, resolve_device_map

    if isinstance(device_map, dict):
        for value in set(device_map.values()):
            if isinstance(value, int) or (isinstance(value, str) and value.startswith(("cuda", "mps"))):
                check_device(f"cuda:{value}" if isinstance(value, int) else value)
            elif value not in ("cpu", "disk"):
                raise MiMassiveError(f"device map target {value!r} is not a GPU index, 'cuda:<i>', 'cpu' or 'disk'")
    try:
        if isinstance(device_map, dict):
            _validate_device_map_values(device_map)
        resolved, memory = resolve_device_map(n_devices, device_map, None, max_memory)
    except ValueError as err:
        raise MiMassiveError(str(err).splitlines()[0]) from err
    return Placement(None, resolved, memory, how="n_devices" if device_map is None else "device_map",
                     n_devices=n_devices)


# ------------------------------------------------------------------------ placing built models
def place_hf_model(hf_model: torch.nn.Module, placement: Placement) -> torch.nn.Module:
    """Put an in-process Hugging Face model (toy, random, variant base) where ``placement`` says.

    One device: ``.to(device)``. A device map: accelerate's own ``infer_auto_device_map`` (with
    ``get_balanced_memory`` for the balanced strategies) and ``dispatch_model``, which also sets
    ``hf_device_map`` the way ``from_pretrained(device_map=...)`` does.
    """
    if not placement.sharded:
        return hf_model.to(placement.device)
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    device_map = placement.device_map
    if isinstance(device_map, str):
        no_split = list(getattr(hf_model, "_no_split_modules", None) or [])
        memory = placement.max_memory
        if device_map != "sequential":
            memory = get_balanced_memory(hf_model, max_memory=memory, no_split_module_classes=no_split,
                                         low_zero=device_map == "balanced_low_0")
        device_map = infer_auto_device_map(hf_model, max_memory=memory, no_split_module_classes=no_split)
    return dispatch_model(hf_model, device_map=device_map)


def finish_bridge(bridge) -> Any:
    """Record on ``bridge.cfg`` where the model really is: the embedding's device and the device count.

    TransformerLens' ``boot`` does this itself; bridges built around a pre-loaded module need it
    (``build_bridge_from_module`` reads only the first parameter's device).
    """
    from transformer_lens.utilities.multi_gpu import count_unique_devices, find_embedding_device

    hf = getattr(bridge, "original_model", bridge)
    embed = find_embedding_device(hf)
    if embed is not None:
        bridge.cfg.device = str(embed)
        bridge.cfg.n_devices = count_unique_devices(hf)
    return bridge


# ------------------------------------------------------------------------ running on a device
def input_device(model) -> torch.device:
    """Where a model's token ids must go: its embedding's device (``cfg.device`` as a fallback).

    >>> import torch
    >>> input_device(torch.nn.Embedding(3, 2))
    device(type='cpu')
    """
    for owner in (model, getattr(model, "original_model", None)):
        if owner is None:
            continue
        get = getattr(owner, "get_input_embeddings", None)
        try:
            emb = get() if callable(get) else None
        except (NotImplementedError, AttributeError):
            emb = None
        weight = getattr(emb, "weight", None)
        if isinstance(weight, torch.Tensor):
            return weight.device
    embed = getattr(model, "embed", None)
    weight = getattr(embed, "W_E", None) if embed is not None else None
    if isinstance(weight, torch.Tensor):
        return weight.device
    weight = getattr(model, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    cfg_device = getattr(getattr(model, "cfg", None), "device", None)
    if cfg_device is not None:
        return torch.device(cfg_device)
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def accumulation_dtype(device: torch.device | str) -> torch.dtype:
    """float64 for sums on devices that have it; float32 on MPS (no float64 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Free memory on a CUDA device (``torch.cuda.mem_get_info``); None elsewhere (not measured)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    return int(free)


def auto_batch_size(model, corpus, *, tokens_per_batch: int = CPU_TOKENS_PER_BATCH,
                    memory_fraction: float = 0.5) -> int:
    """Sequences per forward pass: the corpus' token rule, raised on a GPU while free memory allows.

    On the CPU/MPS this is :meth:`Corpus.auto_batch_size` (about 2,048 tokens per pass). On CUDA the
    estimate per sequence is the residual stream of every block in float32 plus one layer's attention
    scores (``len x d_model x (n_layers + 4) + n_heads x len^2``, 4 bytes each); the batch is the
    largest that fits in ``memory_fraction`` of the free memory, capped at 64 sequences and never
    below the token rule's choice. An out-of-memory error still halves it (:func:`iter_corpus`).
    """
    base = corpus.auto_batch_size(tokens_per_batch)
    free = free_memory_bytes(input_device(model))
    if free is None:
        return base
    cfg = model.cfg
    length = max(corpus.lengths)
    per_seq = 4 * (length * cfg.d_model * (cfg.n_layers + 4) + cfg.n_heads * length * length)
    return max(base, min(64, int(free * memory_fraction) // max(per_seq, 1)))


def is_out_of_memory(err: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA, MPS or the CPU allocator)."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


# ------------------------------------------------------------------------ provenance
def device_record(model) -> dict[str, Any]:
    """The ``"device"`` entry of a result's provenance.

    >>> import mi_massive as mm
    >>> rec = device_record(mm.load_toy("toy-llama"))
    >>> rec["type"], rec["device"], rec["device_map"]
    ('cpu', 'cpu', None)

    Keys: ``type`` (cpu/cuda/mps), ``device`` (the embedding's device, e.g. ``cuda:0``), ``device_map``
    (HF module name -> device for a sharded model, else None), ``n_devices``, ``name`` (GPU name or the
    platform's processor), ``memory_bytes`` (total memory of that GPU; None on CPU/MPS), ``torch`` and
    ``cuda`` (versions; ``cuda`` None on a CPU build).
    """
    dev = input_device(model)
    hf = getattr(model, "original_model", model)
    device_map = getattr(hf, "hf_device_map", None)
    devices = sorted(map(str, {p.device for p in hf.parameters()})) if isinstance(hf, torch.nn.Module) else [str(dev)]
    sharded = len(devices) > 1 or (device_map is not None and len(set(map(str, device_map.values()))) > 1)
    name, memory = platform.processor() or platform.machine(), None
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        name, memory = props.name, int(props.total_memory)
    elif dev.type == "mps":
        name = f"Apple MPS ({platform.machine()})"
    return {
        "type": dev.type,
        "device": str(dev),
        "device_map": {str(k): str(v) for k, v in device_map.items()} if sharded and device_map else None,
        "n_devices": len(devices),
        "name": name,
        "memory_bytes": memory,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
