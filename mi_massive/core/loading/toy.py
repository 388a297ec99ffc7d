"""Small in-process models for fast tests (random GPT-2 / Llama shapes) and planted massive activations.

Everything here is built from a config and a seed; nothing is downloaded. The toy tokenizer is a
byte-level tokenizer with no merges (every UTF-8 byte is one token, id = byte + 1) plus
``<|endoftext|>`` (id 0) as BOS/EOS/pad, so tokenisation is predictable and the vocabulary is tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mi_massive.errors import MiMassiveError

TOY_KINDS = ("toy-gpt2", "toy-llama", "toy-mistral", "toy-qwen2", "toy-gemma2", "toy-gemma3", "toy-olmo2",
             "toy-phi3", "toy-gpt-neox", "toy-gptj", "toy-opt", "toy-falcon")
BOS_TOKEN = "<|endoftext|>"
TOY_VOCAB_SIZE = 257  # 256 bytes + BOS


@dataclass(frozen=True)
class ToyConfig:
    """Shape of a toy model. ``n_kv_heads`` only matters for Llama (grouped-query attention)."""

    n_layers: int = 3
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 256
    n_ctx: int = 512


def _byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table used by byte-level BPE tokenizers."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


def toy_tokenizer_dir(cache_root: Path) -> Path:
    """Write (once) and return a directory holding the toy byte-level tokenizer.

    TransformerBridge reloads tokenizers by ``name_or_path``, so the tokenizer must live on disk.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    target = cache_root / "toy_tokenizer_v1"
    if (target / "tokenizer.json").exists():
        return target
    vocab = {BOS_TOKEN: 0}
    vocab.update({char: byte + 1 for byte, char in _byte_to_unicode().items()})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS_TOKEN, eos_token=BOS_TOKEN, pad_token=BOS_TOKEN
    )
    tmp = target.with_name(target.name + f".tmp{id(tok)}")
    tok.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its copy is identical
        pass
    return target


# kind -> (transformers config class, model class, shipped random config whose non-shape fields are reused)
_ARCH = {
    "toy-mistral": ("MistralConfig", "MistralForCausalLM", "mistral-7b"),
    "toy-qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2.5-7b"),
    "toy-gemma2": ("Gemma2Config", "Gemma2ForCausalLM", "gemma-2-9b"),
    "toy-gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", None),
    "toy-olmo2": ("Olmo2Config", "Olmo2ForCausalLM", None),
    "toy-phi3": ("Phi3Config", "Phi3ForCausalLM", None),
    "toy-gpt-neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", "pythia-1b"),
    "toy-gptj": ("GPTJConfig", "GPTJForCausalLM", None),
    "toy-opt": ("OPTConfig", "OPTForCausalLM", None),
    "toy-falcon": ("FalconConfig", "FalconForCausalLM", None),
}
TOY_SLIDING_WINDOW = 8  # Gemma-2/3 toys: local layers see 8 tokens, so sliding windows matter in short tests


def _shipped_fields(name: str | None) -> dict:
    """Architecture fields (norm eps, rope theta, soft-capping, rotary fraction, activation) of a shipped config."""
    if name is None:
        return {}
    import json

    raw = json.loads((Path(__file__).parent / "configs" / f"{name}.json").read_text())
    drop = {"_meta", "model_type", "architectures", "rope_scaling", "torch_dtype", "dtype"}
    return {k: v for k, v in raw.items() if k not in drop}


def _arch_config(kind: str, cfg: ToyConfig) -> dict:
    """Config keyword arguments of a toy: shared toy shapes + the architecture's own features."""
    ids = {"vocab_size": TOY_VOCAB_SIZE, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    llama_like = {"num_hidden_layers": cfg.n_layers, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
                  "num_key_value_heads": cfg.n_kv_heads, "intermediate_size": cfg.d_mlp,
                  "max_position_embeddings": cfg.n_ctx, "head_dim": cfg.d_model // cfg.n_heads}
    if kind in ("toy-mistral", "toy-qwen2", "toy-phi3", "toy-olmo2"):
        extra = {"tie_word_embeddings": False}
        if kind == "toy-mistral":
            extra["sliding_window"] = None
        if kind == "toy-qwen2":
            extra["use_sliding_window"] = False
        return {**llama_like, **extra, **ids}
    if kind in ("toy-gemma2", "toy-gemma3"):
        extra = {"query_pre_attn_scalar": cfg.d_model // cfg.n_heads, "sliding_window": TOY_SLIDING_WINDOW,
                 "layer_types": [("full_attention" if (i + 1) % 2 == 0 else "sliding_attention")
                                 for i in range(cfg.n_layers)]}
        if kind == "toy-gemma3":  # local/global alternation; Gemma-3 drops attention soft-capping, keeps q/k norms
            extra.update({"rope_local_base_freq": 10000.0})
        else:
            extra.update({"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0})
        return {**llama_like, **extra, **ids}
    if kind == "toy-gpt-neox":  # parallel attention + MLP, rotary on a quarter of each head
        return {"num_hidden_layers": cfg.n_layers, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
                "intermediate_size": cfg.d_mlp, "max_position_embeddings": cfg.n_ctx, "rotary_pct": 0.25,
                "use_parallel_residual": True, "tie_word_embeddings": False, **ids}
    if kind == "toy-gptj":  # parallel block with ONE shared LayerNorm, partial rotary
        return {"n_layer": cfg.n_layers, "n_embd": cfg.d_model, "n_head": cfg.n_heads, "n_inner": cfg.d_mlp,
                "n_positions": cfg.n_ctx, "rotary_dim": cfg.d_model // cfg.n_heads // 2, **ids}
    if kind == "toy-opt":  # learned positions (offset 2), ReLU MLP, pre-LN
        return {"num_hidden_layers": cfg.n_layers, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
                "ffn_dim": cfg.d_mlp, "max_position_embeddings": cfg.n_ctx, "word_embed_proj_dim": cfg.d_model,
                "do_layer_norm_before": True, **ids}
    if kind == "toy-falcon":  # Falcon-7B layout: parallel block, one LayerNorm, multi-query attention, rotary
        return {"num_hidden_layers": cfg.n_layers, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
                "parallel_attn": True, "new_decoder_architecture": False, "multi_query": True, "alibi": False,
                "bias": True, "ffn_hidden_size": cfg.d_mlp, "max_position_embeddings": cfg.n_ctx, **ids}
    raise MiMassiveError(f"unknown toy model '{kind}'; choose one of {', '.join(TOY_KINDS)}")


def build_toy_hf(kind: str, seed: int = 0, config: ToyConfig | None = None) -> torch.nn.Module:
    """A randomly initialised Hugging Face model of the given kind, in eval mode, fp32.

    >>> type(build_toy_hf("toy-gemma2")).__name__, type(build_toy_hf("toy-gpt-neox")).__name__
    ('Gemma2ForCausalLM', 'GPTNeoXForCausalLM')

    ``toy-gpt2`` is a ``GPT2LMHeadModel`` (LayerNorm, learned positions, biases, GELU MLP);
    ``toy-llama`` is a ``LlamaForCausalLM`` (RMSNorm, RoPE, GQA, gated SiLU MLP, no biases). The others
    (:data:`TOY_KINDS`) are the same shapes (:class:`ToyConfig`) in each architecture's own class, with its
    features switched on: Mistral, Qwen2 (q/k/v biases), Gemma-2 (sandwich post-norms, sqrt(d) embedding
    scale, attention and final logit soft-capping, sliding-window layers of 8 tokens), Gemma-3 (post-norms,
    scaled embeddings, q/k norms, sliding/global layers), OLMo-2 (post-sublayer norms only, q/k norms),
    Phi-3 (fused qkv and gate/up), GPT-NeoX (parallel attention+MLP, 25% rotary), GPT-J (parallel block,
    one LayerNorm), OPT (learned positions with offset 2, ReLU) and Falcon (parallel block, multi-query).
    Architecture fields not about shape come from the shipped ``configs/*.json`` where one exists.
    The same seed always gives the same weights; nothing is downloaded.
    """
    import transformers

    cfg = config or ToyConfig()
    torch.manual_seed(seed)
    if kind == "toy-gpt2":
        hf_cfg = transformers.GPT2Config(
            n_layer=cfg.n_layers, n_head=cfg.n_heads, n_embd=cfg.d_model, n_inner=cfg.d_mlp,
            n_positions=cfg.n_ctx, vocab_size=TOY_VOCAB_SIZE, bos_token_id=0, eos_token_id=0,
            pad_token_id=0, attn_implementation="eager",
        )
        model = transformers.GPT2LMHeadModel(hf_cfg)
    elif kind == "toy-llama":
        hf_cfg = transformers.LlamaConfig(
            num_hidden_layers=cfg.n_layers, hidden_size=cfg.d_model, num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads, intermediate_size=cfg.d_mlp,
            max_position_embeddings=cfg.n_ctx, vocab_size=TOY_VOCAB_SIZE, bos_token_id=0,
            eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, attn_implementation="eager",
        )
        model = transformers.LlamaForCausalLM(hf_cfg)
    elif kind in _ARCH:
        config_cls, model_cls, shipped = _ARCH[kind]
        fields = {**_shipped_fields(shipped), **_arch_config(kind, cfg)}
        hf_cfg = getattr(transformers, config_cls)(**fields, attn_implementation="eager")
        hf_cfg.architectures = [model_cls]  # TransformerLens picks its adapter from this
        model = getattr(transformers, model_cls)(hf_cfg)
    else:
        raise MiMassiveError(f"unknown toy model '{kind}'; choose one of {', '.join(TOY_KINDS)}")
    return model.eval()


@dataclass(frozen=True)
class PlantedActivation:
    """A massive activation written into a toy model: ``resid_post[layer][position 0, dim] == value``.

    ``indicator_dim`` is the helper dimension that marks position 0 (see :func:`plant_massive_activation`).
    """

    layer: int
    dim: int
    value: float
    indicator_dim: int
    neuron: int


PLANT_FAMILIES = ("gpt2", "gpt_neox", "gptj", "falcon", "opt", "llama", "phi3", "gemma2", "olmo2")
# llama covers Llama, Mistral, Qwen2 (same block layout); gemma2 covers Gemma-2 and Gemma-3


def plant_family(model: torch.nn.Module) -> str:
    """Which weight layout :func:`plant_massive_activation` edits (one of :data:`PLANT_FAMILIES`).

    >>> plant_family(build_toy_hf("toy-llama")), plant_family(build_toy_hf("toy-gpt2"))
    ('llama', 'gpt2')
    >>> plant_family(build_toy_hf("toy-gemma3")), plant_family(build_toy_hf("toy-olmo2"))
    ('gemma2', 'olmo2')

    ``llama`` is any decoder with ``model.layers[i].mlp.{gate,up,down}_proj``, ``self_attn.o_proj`` and a
    pre-MLP norm ``post_attention_layernorm`` (Llama, Mistral, Qwen2); ``gemma2`` adds the sandwich norms
    (``pre/post_feedforward_layernorm``) and the sqrt(d_model) embedding scale (Gemma-2, Gemma-3); ``olmo2``
    has post-sublayer norms only (``post_attention/post_feedforward_layernorm``); ``phi3`` fuses gate and up.
    """
    if hasattr(model, "transformer") and hasattr(model.transformer, "wpe"):
        return "gpt2"
    if hasattr(model, "gpt_neox"):
        return "gpt_neox"
    if hasattr(model, "transformer") and hasattr(model.transformer, "h") and hasattr(model.transformer.h[0], "mlp"):
        blk = model.transformer.h[0]
        if hasattr(blk.mlp, "fc_in"):
            return "gptj"
        if hasattr(blk, "self_attention") and getattr(model.config, "bias", False) and model.config.parallel_attn \
                and not model.config.new_decoder_architecture:
            return "falcon"
    if hasattr(getattr(model, "model", None), "decoder") and hasattr(model.model.decoder, "embed_positions"):
        return "opt"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is not None and len(layers) and hasattr(layers[0].mlp, "gate_up_proj") and hasattr(layers[0].mlp, "down_proj"):
        return "phi3"
    if layers is not None and len(layers) and all(hasattr(layers[0].mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        if hasattr(layers[0], "pre_feedforward_layernorm") and hasattr(layers[0], "post_feedforward_layernorm"):
            return "gemma2"
        if hasattr(layers[0], "post_feedforward_layernorm") and not hasattr(layers[0], "input_layernorm"):
            return "olmo2"
        if hasattr(layers[0], "post_attention_layernorm") and hasattr(layers[0].self_attn, "o_proj"):
            return "llama"
    raise MiMassiveError(f"cannot plant a massive activation in {type(model).__name__}: supported layouts are "
                         f"{', '.join(PLANT_FAMILIES)} (GPT-2, GPT-NeoX, GPT-J, Falcon-7B with biases, OPT, "
                         f"Llama/Mistral/Qwen2, Phi-3, Gemma-2/3, OLMo-2)")


def _blocks(model: torch.nn.Module):
    family = plant_family(model)
    if family == "gpt2":
        return model.transformer.h
    if family == "gpt_neox":
        return model.gpt_neox.layers
    if family in ("gptj", "falcon"):
        return model.transformer.h
    if family == "opt":
        return model.model.decoder.layers
    return model.model.layers


@torch.no_grad()
def plant_massive_activation(
    model: torch.nn.Module, layer: int, dim: int, value: float, *, indicator_dim: int | None = None,
    neuron: int = 0,
) -> PlantedActivation:
    """Edit a model's weights so block ``layer`` writes exactly ``value`` into ``dim`` at position 0.

    >>> hf = build_toy_hf("toy-llama")
    >>> p = plant_massive_activation(hf, 1, 5, 3000.0)
    >>> out = hf(torch.tensor([[0, 66, 67]]), output_hidden_states=True).hidden_states[2]  # block 1's output
    >>> round(out[0, 0, 5].item(), 1), out[0, 1:, 5].abs().max().item()
    (3000.0, 0.0)

    Works on GPT-2, GPT-NeoX (Pythia), GPT-J, Falcon-7B-style (with biases), OPT, Llama-like (Llama,
    Mistral, Qwen2), Phi-3, Gemma-2/3 and OLMo-2 Hugging Face models of any size, dtype and device (see :func:`plant_family`). Construction (hand-derivable, so tests can
    check detection exactly):

    * Residual dim ``dim`` is cleared everywhere: its embedding column and every attention/MLP write
      into it are zeroed. Before block ``layer`` it is therefore exactly 0 at every position.
    * A position-0 marker lives in ``indicator_dim``: GPT-2 sets the position-0 embedding there
      (``wpe[0, i] = 30``); the others have no position embedding, so the BOS token's embedding carries it
      (position 0 whenever ``prepend_bos=True``; Gemma-2 stores 30/sqrt(d_model) because it scales its
      embeddings by sqrt(d_model)). All writes into the marker are zeroed too.
    * MLP neuron ``neuron`` of block ``layer`` reads only the marker and fires only at the marked
      position: GPT-2 / GPT-NeoX use a large negative bias so GELU is exactly 0 elsewhere; Llama's
      SiLU(gate)·up (Gemma-2's GELU(gate)·up) is exactly 0 where the marker is 0. Its output row writes only
      ``dim``, scaled after one calibration forward so that the written value is ``value`` (to the
      dtype's rounding: bf16 keeps 8 significant bits, so 3000 becomes 2992 or 3008). Gemma-2 normalises
      the MLP output (``post_feedforward_layernorm``) before adding it, so there the gain of that norm at
      ``dim`` is calibrated instead.

    From block ``layer`` on, ``resid_post[position 0, dim] == value`` and every other position holds 0
    in ``dim``. The marker itself stays far below the absolute threshold of 100.
    """
    family = plant_family(model)
    blocks = _blocks(model)
    d_model = model.config.hidden_size
    if not 0 <= layer < len(blocks):
        raise MiMassiveError(f"layer {layer} out of range: the model has {len(blocks)} blocks")
    if indicator_dim is None:
        indicator_dim = (dim + d_model // 2) % d_model
    for name, val in (("dim", dim), ("indicator_dim", indicator_dim)):
        if not 0 <= val < d_model:
            raise MiMassiveError(f"{name} {val} out of range: d_model is {d_model}")
    if indicator_dim == dim:
        raise MiMassiveError("indicator_dim must differ from the planted dim")
    marker = 30.0
    bos = model.config.bos_token_id
    cleared = [dim, indicator_dim]
    if family == "gpt2":
        model.transformer.wte.weight[:, cleared] = 0.0
        model.transformer.wpe.weight[:, cleared] = 0.0
        model.transformer.wpe.weight[0, indicator_dim] = marker
        for blk in blocks:  # Conv1D weights are [in, out]
            for proj in (blk.attn.c_proj, blk.mlp.c_proj):
                proj.weight[:, cleared] = 0.0
                proj.bias[cleared] = 0.0
        mlp = blocks[layer].mlp
        mlp.c_fc.weight[:, neuron] = 0.0
        mlp.c_fc.weight[indicator_dim, neuron] = 10.0
        mlp.c_fc.bias[neuron] = -30.0  # LN output at the marker is ~sqrt(d) at position 0, ~0 elsewhere
        mlp.c_proj.weight[neuron, :] = 0.0
        mlp.c_proj.weight[neuron, dim] = 1.0
        blocks[layer].ln_2.weight[indicator_dim] = 1.0
        blocks[layer].ln_2.bias[indicator_dim] = 0.0
    elif family == "gpt_neox":  # parallel residual: x + attn(ln1(x)) + mlp(ln2(x)); nn.Linear is [out, in]
        emb = model.gpt_neox.embed_in.weight
        emb[:, cleared] = 0.0
        emb[bos, indicator_dim] = marker
        for blk in blocks:
            for proj in (blk.attention.dense, blk.mlp.dense_4h_to_h):
                proj.weight[cleared, :] = 0.0
                proj.bias[cleared] = 0.0
        mlp = blocks[layer].mlp
        mlp.dense_h_to_4h.weight[neuron, :] = 0.0
        mlp.dense_h_to_4h.weight[neuron, indicator_dim] = 10.0
        mlp.dense_h_to_4h.bias[neuron] = -30.0
        mlp.dense_4h_to_h.weight[:, neuron] = 0.0
        mlp.dense_4h_to_h.weight[dim, neuron] = 1.0
        blocks[layer].post_attention_layernorm.weight[indicator_dim] = 1.0
        blocks[layer].post_attention_layernorm.bias[indicator_dim] = 0.0
    elif family in ("gptj", "falcon", "opt"):  # LayerNorm + biased MLP read through one LayerNorm
        if family == "opt":
            emb, blk_ln = model.model.decoder.embed_tokens.weight, "final_layer_norm"
            model.model.decoder.embed_positions.weight[:, cleared] = 0.0
            outs = [(blk.self_attn.out_proj, blk.fc2) for blk in blocks]
            fc_in, fc_out = blocks[layer].fc1, blocks[layer].fc2
        elif family == "gptj":
            emb, blk_ln = model.transformer.wte.weight, "ln_1"
            outs = [(blk.attn.out_proj, blk.mlp.fc_out) for blk in blocks]
            fc_in, fc_out = blocks[layer].mlp.fc_in, blocks[layer].mlp.fc_out
        else:
            emb, blk_ln = model.transformer.word_embeddings.weight, "input_layernorm"
            outs = [(blk.self_attention.dense, blk.mlp.dense_4h_to_h) for blk in blocks]
            fc_in, fc_out = blocks[layer].mlp.dense_h_to_4h, blocks[layer].mlp.dense_4h_to_h
        emb[:, cleared] = 0.0
        emb[bos, indicator_dim] = marker
        for pair in outs:
            for proj in pair:
                proj.weight[cleared, :] = 0.0
                if proj.bias is not None:
                    proj.bias[cleared] = 0.0
        fc_in.weight[neuron, :] = 0.0
        fc_in.weight[neuron, indicator_dim] = 10.0
        fc_in.bias[neuron] = -30.0  # GELU/ReLU exactly 0 away from the marker
        fc_out.weight[:, neuron] = 0.0
        fc_out.weight[dim, neuron] = 1.0
        getattr(blocks[layer], blk_ln).weight[indicator_dim] = 1.0
        getattr(blocks[layer], blk_ln).bias[indicator_dim] = 0.0
        mlp = fc_out
    else:
        emb = model.model.embed_tokens
        emb.weight[:, cleared] = 0.0
        scale = float(getattr(emb, "scalar_embed_scale", 1.0)) if family == "gemma2" else 1.0
        emb.weight[bos, indicator_dim] = marker / scale
        down = "down_proj"
        for blk in blocks:  # nn.Linear weights are [out, in]
            blk.self_attn.o_proj.weight[cleared, :] = 0.0
            blk.mlp.down_proj.weight[cleared, :] = 0.0
        mlp = blocks[layer].mlp
        if family == "phi3":  # gate_up_proj rows: [gate (d_mlp); up (d_mlp)]
            d_mlp = mlp.down_proj.weight.shape[1]
            for row in (neuron, d_mlp + neuron):
                mlp.gate_up_proj.weight[row, :] = 0.0
                mlp.gate_up_proj.weight[row, indicator_dim] = 1.0
        else:
            mlp.gate_proj.weight[neuron, :] = 0.0
            mlp.gate_proj.weight[neuron, indicator_dim] = 1.0
            mlp.up_proj.weight[neuron, :] = 0.0
            mlp.up_proj.weight[neuron, indicator_dim] = 1.0
        mlp.down_proj.weight[:, neuron] = 0.0
        mlp.down_proj.weight[dim, neuron] = 1.0
        if family == "gemma2":  # Gemma RMSNorm multiplies by (1 + weight)
            blocks[layer].pre_feedforward_layernorm.weight[indicator_dim] = 0.0
            blocks[layer].post_feedforward_layernorm.weight[dim] = 0.0
        elif family in ("llama", "phi3"):
            blocks[layer].post_attention_layernorm.weight[indicator_dim] = 1.0
        # olmo2: the MLP reads the raw residual; its output is normalised by post_feedforward_layernorm
    # calibrate: one forward on a BOS-started input; the neuron's unit write equals its activation
    device = next(model.parameters()).device
    probe = torch.tensor([[bos, 66, 67]], device=device)
    captured = {}
    def grab(_m, _i, out):  # returns None: the block's output is left as it is
        captured.setdefault("h", out[0] if isinstance(out, tuple) else out)

    handle = blocks[layer].register_forward_hook(grab)
    try:
        model(probe)
    finally:
        handle.remove()
    written = captured["h"][0, 0, dim].float().item()
    if not written > 1.0:
        raise MiMassiveError("planting failed: the marker neuron did not fire at position 0")
    if family == "gpt2":
        mlp.c_proj.weight[neuron, dim] = value / written
    elif family == "gpt_neox":
        mlp.dense_4h_to_h.weight[dim, neuron] = value / written
    elif family in ("gptj", "falcon", "opt"):
        mlp.weight[dim, neuron] = value / written
    elif family == "gemma2":
        blocks[layer].post_feedforward_layernorm.weight[dim] = value / written - 1.0
    elif family == "olmo2":  # plain RMSNorm gain
        blocks[layer].post_feedforward_layernorm.weight[dim] *= value / written
    else:
        mlp.down_proj.weight[dim, neuron] = value / written
    return PlantedActivation(layer=layer, dim=dim, value=float(value), indicator_dim=indicator_dim, neuron=neuron)
