"""``random:NAME`` models: a real architecture at its real size with random weights, built without a download.

>>> from mi_massive.core.loading.random import build_random_hf, random_names
>>> "llama-2-7b" in random_names()
True
>>> hf = build_random_hf("llama-2-7b", device="meta")          # 6.74e9 parameters, nothing allocated
>>> round(sum(p.numel() for p in hf.parameters()) / 1e9, 2), hf.model.embed_tokens.weight.device.type
(6.74, 'meta')

Each name is a small JSON file in ``configs/`` holding the ``transformers`` config fields of a public model
card's ``config.json`` (hidden size, layers, heads, KV heads, MLP width, vocabulary, positions, RoPE settings),
plus ``_meta`` (the card, its published parameter count, and the ``tiny`` overrides: same architecture, a few
dozen dimensions, for tests and ``--tiny`` benchmarks). The model is built on the ``meta`` device (no memory),
materialised directly on the target device (``to_empty``), and initialised there in the requested dtype by the
model class's own ``_init_weights`` after ``torch.manual_seed(seed)`` (linear and embedding weights
N(0, initializer_range=0.02), biases 0, norm gains 1 -- Gemma's ``1 + w`` norms 0 --, rotary tables exact).
The same (name, seed, device, dtype) always gives the same weights; CPU and CUDA random streams differ.

Spec syntax (``load_model`` / ``--model``): ``random:NAME[?plant=L:D:V[,L:D:V...]][&tiny=1]``, e.g.
``random:llama-1b?plant=2:100:3000``: block 2 writes 3000 into residual dim 100 at position 0
(:func:`mi_massive.core.loading.toy.plant_massive_activation`). Tokenizer: the package's byte-level toy
tokenizer (ids 0..256, BOS = 0); the embedding keeps the real vocabulary size (every byte id is valid),
and the config's BOS/EOS/PAD ids are set to 0 to match it. Every output says the weights are random:
``ModelInfo.source == "random"`` and the fingerprint is ``random:NAME:seed=S[:tiny][:plant(L,D,V)...]``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch

from mi_massive.errors import MiMassiveError

RANDOM_PREFIX = "random:"
_CONFIG_PACKAGE = "mi_massive.core.loading"


def random_names() -> list[str]:
    """The shipped ``random:`` names (one JSON config each), sorted.

    >>> random_names()[:3]
    ['gemma-2-9b', 'gpt2', 'gpt2-xl']
    """
    folder = resources.files(_CONFIG_PACKAGE) / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def random_config_fields(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(transformers config fields, _meta)`` of a shipped config.

    >>> fields, meta = random_config_fields("llama-3-8b")
    >>> fields["num_key_value_heads"], meta["published_params"]
    (8, 8030261248)
    """
    if name not in random_names():
        raise MiMassiveError(f"unknown random model '{name}'; choose one of {', '.join(random_names())}")
    text = (resources.files(_CONFIG_PACKAGE) / "configs" / f"{name}.json").read_text()
    fields = json.loads(text)
    meta = fields.pop("_meta")
    return fields, meta


def random_hf_config(name: str, *, tiny: bool = False, **overrides: Any):
    """The ``transformers`` config of ``name`` (``tiny``: the shrunken test shape; ``overrides``: any field).

    >>> cfg = random_hf_config("gemma-2-9b", tiny=True)
    >>> type(cfg).__name__, cfg.hidden_size, cfg.num_hidden_layers, cfg.bos_token_id
    ('Gemma2Config', 64, 2, 0)

    BOS/EOS/PAD are set to 0 (the toy byte-level tokenizer's ``<|endoftext|>``).
    """
    from transformers import AutoConfig

    fields, meta = random_config_fields(name)
    if tiny:
        fields.update(meta.get("tiny", {}))
    fields.update(overrides)
    fields.update(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields)


def _clear_init_flags(model: torch.nn.Module) -> None:
    """Forget transformers' "already initialised" marks, so ``initialize_weights`` fills every tensor."""
    for obj in [*model.modules(), *model.parameters(), *model.buffers()]:
        if "_is_hf_initialized" in getattr(obj, "__dict__", {}):
            del obj.__dict__["_is_hf_initialized"]


@torch.no_grad()
def build_random_hf(name: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32,
                    seed: int = 0, tiny: bool = False, attn_implementation: str = "eager",
                    **overrides: Any) -> torch.nn.Module:
    """A Hugging Face causal LM of architecture ``name`` with random weights, in eval mode, on ``device``.

    >>> a = build_random_hf("gpt2", tiny=True, seed=1)
    >>> b = build_random_hf("gpt2", tiny=True, seed=1)
    >>> torch.equal(a.transformer.h[0].mlp.c_fc.weight, b.transformer.h[0].mlp.c_fc.weight)
    True

    ``device="meta"`` returns the unmaterialised model (shapes and parameter counts only). Otherwise the
    parameters are created on ``device`` (never first on the CPU) and filled by the model's own
    initialiser after ``torch.manual_seed(seed)``; tied embeddings stay tied.
    """
    from transformers import AutoModelForCausalLM

    from mi_massive.core.loading.specs import parse_dtype

    torch_dtype = parse_dtype(dtype)
    config = random_hf_config(name, tiny=tiny, **overrides)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn_implementation)
    if torch.device(device).type == "meta":
        return model.eval()
    try:
        model.to_empty(device=device)
    except (RuntimeError, AssertionError) as err:  # no such device, or out of memory
        raise MiMassiveError(f"cannot materialise random:{name} on {device}: {str(err).splitlines()[0][:200]}") from err
    _clear_init_flags(model)
    torch.manual_seed(seed)
    model.initialize_weights()
    model.tie_weights()
    for buf_name, buf in model.named_buffers():
        if buf.is_floating_point() and not torch.isfinite(buf).all():
            raise MiMassiveError(f"random:{name}: buffer {buf_name} was not initialised (transformers version?)")
    return model.eval()


def parse_random_spec(spec: str) -> tuple[str, list[tuple[int, int, float]], bool]:
    """``(name, plant, tiny)`` from ``random:NAME[?plant=L:D:V[,L:D:V]][&tiny=1]``.

    >>> parse_random_spec("random:llama-1b?plant=2:100:3000,3:7:-50&tiny=1")
    ('llama-1b', [(2, 100, 3000.0), (3, 7, -50.0)], True)
    """
    if not spec.startswith(RANDOM_PREFIX):
        raise MiMassiveError(f"not a random model spec: '{spec}' (expected random:NAME)")
    name, _, query = spec[len(RANDOM_PREFIX):].partition("?")
    plant: list[tuple[int, int, float]] = []
    tiny = False
    for part in filter(None, query.split("&")):
        key, _, val = part.partition("=")
        if key == "plant":
            for item in filter(None, val.split(",")):
                bits = item.split(":")
                try:
                    layer, dim, value = int(bits[0]), int(bits[1]), float(bits[2])
                    if len(bits) != 3:
                        raise ValueError
                except (ValueError, IndexError):
                    raise MiMassiveError(f"bad plant '{item}' in '{spec}': expected LAYER:DIM:VALUE, e.g. 2:100:3000")
                plant.append((layer, dim, value))
        elif key == "tiny":
            tiny = val.lower() not in ("0", "false", "no")
        else:
            raise MiMassiveError(f"unknown option '{key}' in '{spec}': use plant=L:D:V or tiny=1")
    if name not in random_names():
        raise MiMassiveError(f"unknown random model '{name}'; choose one of {', '.join(random_names())}")
    return name, plant, tiny


def load_random(spec: str, *, device: str | torch.device | None = None, dtype: str | torch.dtype = torch.float32,
                seed: int = 0, plant: list[tuple[int, int, float]] | None = None, tiny: bool | None = None,
                placement=None):
    """A bridged ``random:`` model (see the module docstring); ``plant`` adds to the spec's own plants.

    >>> import mi_massive as mm
    >>> m = load_random("random:llama-1b?tiny=1&plant=1:5:3000")
    >>> info = mm.model_info(m)
    >>> info.source, info.fingerprint, info.n_layers, info.d_model
    ('random', 'random:llama-1b:seed=0:tiny:plant(1,5,3000)', 2, 64)

    ``device=None`` picks CUDA, else MPS, else the CPU (as ``load_model``); ``placement`` (from
    :func:`mi_massive.core.devices.resolve_placement`) overrides it. On one device the weights are created
    and initialised on that device; a device map builds them on the CPU (same numbers as a CPU load for
    the seed) and dispatches them with accelerate (:func:`mi_massive.core.devices.place_hf_model`).
    ``model_info(bridge).extra`` records the config name, the published parameter count, the actual
    count, the planted entries and ``"weights": "random"``.
    """
    from mi_massive.core.devices import finish_bridge, place_hf_model, resolve_placement
    from mi_massive.core.loading.bridge import attach_info, bridge_from_hf, describe
    from mi_massive.core.loading.toy import plant_massive_activation, toy_tokenizer_dir
    from mi_massive.core.loading.cache import cache_root
    from transformers import AutoTokenizer

    name, spec_plant, spec_tiny = parse_random_spec(spec)
    tiny = spec_tiny if tiny is None else tiny
    placement = placement or resolve_placement(device)
    target = "cpu" if placement.sharded else placement.device
    hf = build_random_hf(name, device=target, dtype=dtype, seed=seed, tiny=tiny)
    planted = [plant_massive_activation(hf, layer, d, value) for layer, d, value in [*spec_plant, *(plant or [])]]
    if placement.sharded:
        hf = place_hf_model(hf, placement)
    label = f"random:{name}" + (":tiny" if tiny else "")
    bridge = finish_bridge(bridge_from_hf(hf, AutoTokenizer.from_pretrained(str(toy_tokenizer_dir(cache_root()))),
                                          name=label))
    fingerprint = (f"random:{name}:seed={seed}" + (":tiny" if tiny else "")
                   + "".join(f":plant({p.layer},{p.dim},{p.value:g})" for p in planted))
    _, meta = random_config_fields(name)
    extra = {
        "weights": "random", "random_name": name, "tiny": tiny, "seed": seed, "model_card": meta["model_card"],
        "published_params": meta["published_params"],
        "n_params": sum(p.numel() for p in hf.parameters()),
        "planted": [p.__dict__ for p in planted],
        "tokenizer": "toy byte-level (ids 0..256, BOS 0); embedding keeps the real vocabulary size",
    }
    return attach_info(bridge, describe(bridge, spec=spec, source="random", name=label, fingerprint=fingerprint,
                                        extra=extra))


def random_note(info) -> str | None:
    """The one line the CLI prints for a random model (None otherwise).

    >>> from types import SimpleNamespace
    >>> random_note(SimpleNamespace(source="random", spec="random:llama-2-7b", extra={"seed": 0}))
    'weights are RANDOM (random:llama-2-7b, seed 0)'
    """
    if getattr(info, "source", None) != "random":
        return None
    return f"weights are RANDOM ({info.spec}, seed {info.extra.get('seed', 0)})"


def random_model_rows() -> list[dict[str, Any]]:
    """Rows for ``mi-massive models``: every ``random:`` spec with its shape."""
    rows = []
    for name in random_names():
        fields, meta = random_config_fields(name)
        params = meta["published_params"] / 1e9
        rows.append({"name": f"{RANDOM_PREFIX}{name}", "installed": True, "path": None, "install": None,
                     "description": f"RANDOM weights, {meta['model_card']} shape ({params:.2f}B params); "
                                    f"?plant=L:D:V plants a massive activation"})
    return rows
