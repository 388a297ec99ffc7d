"""``mi-massive train-variant`` and ``mi-massive compare-variants``: build, train and compare mitigation variants."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mi_massive.core.cli import echo_table, user_errors
from mi_massive.errors import MiMassiveError

BaseOpt = typer.Option("toy-gpt2", "--base", "-b", help="toy-gpt2, toy-llama, smollm2-135m, a .gguf or an HF dir")
DataOpt = typer.Option("wikitext-2", "--data", help="'wikitext-2' or a UTF-8 text file (last 10% held out)")
StepsOpt = typer.Option(200, "--steps", help="optimiser steps")
BatchOpt = typer.Option(16, "--batch-size", help="windows per step")
SeqOpt = typer.Option(128, "--seq-len", help="tokens per window, BOS included")
LrOpt = typer.Option(1e-3, "--lr", help="peak AdamW learning rate")
MinLrOpt = typer.Option(None, "--min-lr", help="final learning rate of the cosine (default lr/10)")
WarmupOpt = typer.Option(20, "--warmup", help="linear warmup steps")
SeedOpt = typer.Option(0, "--seed", help="seed of base weights, new parameters and batches")
TrainableOpt = typer.Option("all", "--trainable", help="'all' parameters or only the variant's 'new' ones")
LayersOpt = typer.Option(4, "--n-layers", help="toy bases: blocks")
DModelOpt = typer.Option(128, "--d-model", help="toy bases: residual width")
HeadsOpt = typer.Option(4, "--n-heads", help="toy bases: query heads")
KVHeadsOpt = typer.Option(2, "--n-kv-heads", help="toy-llama: key/value heads")
TvrTargetOpt = typer.Option(0.01, "--tvr-target", help="TVR target std")
TvrIntervalOpt = typer.Option(50, "--tvr-interval", help="TVR every N optimiser steps")
TvrRatioOpt = typer.Option(1.2, "--tvr-ratio", help="TVR rescales a matrix when std/target exceeds this")
TvrDepthOpt = typer.Option(False, "--tvr-depth-scaling/--no-tvr-depth-scaling", help="target/sqrt(layer)")
TvrStartOpt = typer.Option(False, "--tvr-at-start/--no-tvr-at-start", help="also apply TVR once before training")
AlphaOpt = typer.Option(0.5, "--dyt-alpha", help="DyT initial alpha")
AlphaAttnOpt = typer.Option(None, "--dyt-alpha-attn", help="DyT alpha0 of the norm before attention (Llama recipe)")
AlphaMlpOpt = typer.Option(None, "--dyt-alpha-mlp", help="DyT alpha0 of the norm before the MLP")
AlphaFinalOpt = typer.Option(None, "--dyt-alpha-final", help="DyT alpha0 of the final norm")
ThreadsOpt = typer.Option(1, "--threads", help="torch CPU threads; 1 is fastest for tiny models on a shared CPU "
                          "(measured 0.04 s/step at 1 thread vs 2.5 s at 2 threads under load)")
MaxCharsOpt = typer.Option(None, "--max-chars", help="read at most this many characters of the training text")



def _configs(steps, batch_size, seq_len, lr, min_lr, warmup, seed, trainable, n_layers, d_model, n_heads, n_kv_heads,
             base, tvr_target, tvr_interval, tvr_ratio, tvr_depth, threads):
    import torch

    from mi_massive.core.loading import TOY_KINDS, ToyConfig
    from mi_massive.training import TrainConfig
    from mi_massive.core.variants import TVRConfig

    if threads:
        torch.set_num_threads(threads)
    for name, value in (("steps", steps), ("batch-size", batch_size), ("n-layers", n_layers), ("d-model", d_model),
                        ("n-heads", n_heads), ("n-kv-heads", n_kv_heads)):
        if value < 1:
            raise MiMassiveError(f"--{name} must be a positive integer, got {value}")
    if lr <= 0:
        raise MiMassiveError("--lr must be positive")
    if d_model % n_heads or n_heads % n_kv_heads:
        raise MiMassiveError("--d-model must be divisible by --n-heads, and --n-heads by --n-kv-heads")
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      min_lr=lr / 10 if min_lr is None else min_lr, warmup=min(warmup, steps), seed=seed,
                      trainable=trainable)
    toy = ToyConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, d_mlp=4 * d_model,
                    n_ctx=max(512, seq_len)) if base in TOY_KINDS else None
    tvr = TVRConfig(target_std=tvr_target, ratio_threshold=tvr_ratio, interval=tvr_interval,
                    scale_with_depth=tvr_depth)
    return cfg, toy, tvr


def _spec(name, tvr, dyt_alpha, dyt_alpha_attn, dyt_alpha_mlp, dyt_alpha_final):
    """The VariantSpec of a variant name with the command's TVR config and per-norm DyT alpha0."""
    from dataclasses import replace

    from mi_massive.core.variants import DyTAlpha, VariantSpec

    alpha = DyTAlpha(default=dyt_alpha, attn=dyt_alpha_attn, mlp=dyt_alpha_mlp, final=dyt_alpha_final)
    return replace(VariantSpec.parse(name, tvr=tvr), dyt_alpha=alpha)


@user_errors
def train_variant_command(
    variant: str = typer.Option(..., "--variant", "-v", help="baseline, kv_bias, dyt, tvr, register or hybrids like tvr+kv_bias"),
    base: str = BaseOpt, data: str = DataOpt, steps: int = StepsOpt, batch_size: int = BatchOpt, seq_len: int = SeqOpt,
    lr: float = LrOpt, min_lr: Optional[float] = MinLrOpt, warmup: int = WarmupOpt, seed: int = SeedOpt,
    trainable: str = TrainableOpt, n_layers: int = LayersOpt, d_model: int = DModelOpt, n_heads: int = HeadsOpt,
    n_kv_heads: int = KVHeadsOpt, tvr_target: float = TvrTargetOpt, tvr_interval: int = TvrIntervalOpt,
    tvr_ratio: float = TvrRatioOpt, tvr_depth: bool = TvrDepthOpt, tvr_at_start: bool = TvrStartOpt,
    dyt_alpha: float = AlphaOpt, dyt_alpha_attn: Optional[float] = AlphaAttnOpt,
    dyt_alpha_mlp: Optional[float] = AlphaMlpOpt, dyt_alpha_final: Optional[float] = AlphaFinalOpt,
    max_chars: Optional[int] = MaxCharsOpt, n_eval: int = typer.Option(16, "--n-eval", help="held-out windows"),
    threads: int = ThreadsOpt,
    out: Path = typer.Option(..., "--out", "-o", help="directory of the saved variant (load it with -m OUT)"),
) -> None:
    """Build a variant on a base model, train it (resumable), and save it as safetensors + JSON."""
    from mi_massive.analyses.variants.run import base_tokenizer, train_variant
    from mi_massive.training import load_streams

    cfg, toy, tvr = _configs(steps, batch_size, seq_len, lr, min_lr, warmup, seed, trainable, n_layers, d_model,
                                    n_heads, n_kv_heads, base, tvr_target, tvr_interval, tvr_ratio, tvr_depth, threads)
    spec = _spec(variant, tvr, dyt_alpha, dyt_alpha_attn, dyt_alpha_mlp, dyt_alpha_final)
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    tok = base_tokenizer(base)
    train_stream, eval_stream = load_streams(tok, data, max_chars=max_chars)
    trained = train_variant(base, spec, train_stream=train_stream, eval_windows=eval_stream.windows(n_eval, seq_len),
                            cfg=cfg, out_dir=out, toy_config=toy, tvr_at_start=tvr_at_start)
    log = trained.log
    final = log["evals"][-1]["loss"] if log.get("evals") else float("nan")
    status = "reused" if trained.reused else f"{log.get('steps', 0)} steps in {log.get('seconds', 0.0):.0f} s"
    typer.echo(f"{spec.name}: eval loss {final:.4f} nats/token ({status}); saved to {out}")


@user_errors
def compare_variants_command(
    variants: str = typer.Option("baseline,kv_bias,dyt,tvr,tvr+kv_bias,tvr+dyt,register", "--variants",
                                 help="comma-separated variant names"),
    base: str = BaseOpt, data: str = DataOpt, steps: int = StepsOpt, batch_size: int = BatchOpt, seq_len: int = SeqOpt,
    lr: float = LrOpt, min_lr: Optional[float] = MinLrOpt, warmup: int = WarmupOpt, seed: int = SeedOpt,
    trainable: str = TrainableOpt, n_layers: int = LayersOpt, d_model: int = DModelOpt, n_heads: int = HeadsOpt,
    n_kv_heads: int = KVHeadsOpt, tvr_target: float = TvrTargetOpt, tvr_interval: int = TvrIntervalOpt,
    tvr_ratio: float = TvrRatioOpt, tvr_depth: bool = TvrDepthOpt, tvr_at_start: bool = TvrStartOpt,
    dyt_alpha: float = AlphaOpt, dyt_alpha_attn: Optional[float] = AlphaAttnOpt,
    dyt_alpha_mlp: Optional[float] = AlphaMlpOpt, dyt_alpha_final: Optional[float] = AlphaFinalOpt,
    max_chars: Optional[int] = MaxCharsOpt,
    n_eval: int = typer.Option(16, "--n-eval", help="held-out windows for the loss"),
    scan_windows: int = typer.Option(8, "--scan-windows", help="held-out windows scanned for massive activations"),
    threads: int = ThreadsOpt,
    out: Path = typer.Option(..., "--out", "-o", help="output directory (compare.json, compare.html, one dir per variant)"),
) -> None:
    """Train every variant with the same budget and seed; report loss, scan and attention sinks side by side."""
    from mi_massive.analyses.variants.run import compare_variants

    cfg, toy, tvr = _configs(steps, batch_size, seq_len, lr, min_lr, warmup, seed, trainable, n_layers, d_model,
                                    n_heads, n_kv_heads, base, tvr_target, tvr_interval, tvr_ratio, tvr_depth, threads)
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if not names:
        raise MiMassiveError("--variants is empty")
    specs = [_spec(n, tvr, dyt_alpha, dyt_alpha_attn, dyt_alpha_mlp, dyt_alpha_final) for n in names]
    if scan_windows > n_eval:
        raise MiMassiveError("--scan-windows cannot exceed --n-eval")
    record = compare_variants(base, specs, data=data, cfg=cfg, out_dir=out, toy_config=toy, n_eval=n_eval,
                              scan_windows=scan_windows, max_chars=max_chars, tvr_at_start=tvr_at_start)
    print_comparison(record)
    typer.echo("wrote " + ", ".join([str(out / "compare.json"), *record["figure"]]))


def print_comparison(record: dict) -> None:
    """Side-by-side table: loss, perplexity, max top-1, massive entries/dims, attention to pos 0 / slot."""
    rows = []
    for r in record["reports"]:
        a0 = max(r["attn_first_token"]) if r["attn_first_token"] else float("nan")
        slot = f"{max(r['attn_bias_slot']):.2f}" if r["attn_bias_slot"] else "-"
        rows.append([r["name"], r["train"].get("steps", 0), f"{r['eval_loss']:.4f}", f"{r['eval_ppl']:.2f}",
                     f"{r['max_top1']:.1f}", r["n_massive"], ",".join(map(str, r["massive_dims"][:5])) or "-",
                     f"{a0:.2f}", slot])
    echo_table(["variant", "steps", "eval loss", "ppl", "max top-1 |h|", "massive", "dims", "max attn pos0",
                "max attn slot"], rows)
