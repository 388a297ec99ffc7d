"""Small in-process models for fast tests: random GPT-2 / Llama shapes and planted massive activations.

Everything here is built from a config and a seed; nothing is downloaded. The toy tokenizer is a
byte-level tokenizer with no merges (every UTF-8 byte is one token, id = byte + 1) plus
``<|endoftext|>`` (id 0) as BOS/EOS/pad, so tokenisation is predictable and the vocabulary is tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mi_massive.errors import MiMassiveError

TOY_KINDS = ("toy-gpt2", "toy-llama")
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


def build_toy_hf(kind: str, seed: int = 0, config: ToyConfig | None = None) -> torch.nn.Module:
    """A randomly initialised Hugging Face model of the given kind, in eval mode, fp32.

    ``toy-gpt2`` is a ``GPT2LMHeadModel`` (LayerNorm, learned positions, biases, GELU MLP);
    ``toy-llama`` is a ``LlamaForCausalLM`` (RMSNorm, RoPE, GQA, gated SiLU MLP, no biases).
    The same seed always gives the same weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    cfg = config or ToyConfig()
    torch.manual_seed(seed)
    if kind == "toy-gpt2":
        hf_cfg = GPT2Config(
            n_layer=cfg.n_layers, n_head=cfg.n_heads, n_embd=cfg.d_model, n_inner=cfg.d_mlp,
            n_positions=cfg.n_ctx, vocab_size=TOY_VOCAB_SIZE, bos_token_id=0, eos_token_id=0,
            pad_token_id=0, attn_implementation="eager",
        )
        model = GPT2LMHeadModel(hf_cfg)
    elif kind == "toy-llama":
        hf_cfg = LlamaConfig(
            num_hidden_layers=cfg.n_layers, hidden_size=cfg.d_model, num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads, intermediate_size=cfg.d_mlp,
            max_position_embeddings=cfg.n_ctx, vocab_size=TOY_VOCAB_SIZE, bos_token_id=0,
            eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, attn_implementation="eager",
        )
        model = LlamaForCausalLM(hf_cfg)
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


def _blocks(model: torch.nn.Module):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


@torch.no_grad()
def plant_massive_activation(
    model: torch.nn.Module, layer: int, dim: int, value: float, *, indicator_dim: int | None = None,
    neuron: int = 0,
) -> PlantedActivation:
    """Edit a toy model's weights so block ``layer`` writes exactly ``value`` into ``dim`` at position 0.

    Construction (hand-derivable, so tests can check detection exactly):

    * Residual dim ``dim`` is cleared everywhere: its embedding column and every attention/MLP write
      into it are zeroed. Before block ``layer`` it is therefore exactly 0 at every position.
    * A position-0 marker lives in ``indicator_dim``: GPT-2 sets the position-0 embedding there
      (``wpe[0, i] = 30``); Llama has no position embedding, so the BOS token's embedding carries it
      (position 0 whenever ``prepend_bos=True``). All writes into the marker are zeroed too.
    * MLP neuron ``neuron`` of block ``layer`` reads only the marker and fires only at the marked
      position: GPT-2 uses a large negative bias so GELU is exactly 0 elsewhere; Llama's
      SiLU(gate)·up is exactly 0 where the marker is 0. Its output row writes only ``dim``, scaled
      after one calibration forward so that the written value is ``value`` (to float rounding).

    From block ``layer`` on, ``resid_post[position 0, dim] == value`` and every other position holds 0
    in ``dim``. The marker itself stays far below the absolute threshold of 100.
    """
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
    is_gpt2 = hasattr(model, "transformer")
    cleared = [dim, indicator_dim]
    if is_gpt2:
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
    else:
        bos = model.config.bos_token_id
        model.model.embed_tokens.weight[:, cleared] = 0.0
        model.model.embed_tokens.weight[bos, indicator_dim] = marker
        for blk in blocks:  # nn.Linear weights are [out, in]
            blk.self_attn.o_proj.weight[cleared, :] = 0.0
            blk.mlp.down_proj.weight[cleared, :] = 0.0
        mlp = blocks[layer].mlp
        mlp.gate_proj.weight[neuron, :] = 0.0
        mlp.gate_proj.weight[neuron, indicator_dim] = 1.0
        mlp.up_proj.weight[neuron, :] = 0.0
        mlp.up_proj.weight[neuron, indicator_dim] = 1.0
        mlp.down_proj.weight[:, neuron] = 0.0
        mlp.down_proj.weight[dim, neuron] = 1.0
        blocks[layer].post_attention_layernorm.weight[indicator_dim] = 1.0
    # calibrate: one forward on a BOS-started input; the neuron's unit write equals its activation
    probe = torch.tensor([[model.config.bos_token_id, 66, 67]])
    captured = {}
    handle = blocks[layer].register_forward_hook(
        lambda _m, _i, out: captured.setdefault("h", out[0] if isinstance(out, tuple) else out)
    )
    try:
        model(probe)
    finally:
        handle.remove()
    written = captured["h"][0, 0, dim].item()
    if not written > 1.0:
        raise MiMassiveError("planting failed: the marker neuron did not fire at position 0")
    if is_gpt2:
        mlp.c_proj.weight[neuron, dim] = value / written
    else:
        mlp.down_proj.weight[dim, neuron] = value / written
    return PlantedActivation(layer=layer, dim=dim, value=float(value), indicator_dim=indicator_dim, neuron=neuron)
