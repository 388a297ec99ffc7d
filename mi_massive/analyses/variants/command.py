"""``mi-massive train-variant`` and ``mi-massive compare-variants``: build, train and compare mitigation variants."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from mi_massive.core.cli import check_positive, echo_table, out_option, user_errors
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



@dataclass
class TrainOptions:
    """The training options both variants commands share (declared once, by :func:`train_options`;
    the defaults are those of the options)."""

    base: str
    data: str
    steps: int
    batch_size: int
    seq_len: int
    lr: float
    min_lr: Optional[float]
    warmup: int
    seed: int
    trainable: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    tvr_target: float
    tvr_interval: int
    tvr_ratio: float
    tvr_depth: bool
    tvr_at_start: bool
    dyt_alpha: float
    dyt_alpha_attn: Optional[float]
    dyt_alpha_mlp: Optional[float]
    dyt_alpha_final: Optional[float]
    max_chars: Optional[int]
    threads: int

    def configs(self):
        """(TrainConfig, ToyConfig or None, TVRConfig), after checking the options (one-line errors)."""
        import torch

        from mi_massive.core.loading import TOY_KINDS, ToyConfig
        from mi_massive.core.variants import TVRConfig
        from mi_massive.training import TrainConfig

        check_positive(steps=self.steps, batch_size=self.batch_size, n_layers=self.n_layers, d_model=self.d_model,
                       n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, tvr_interval=self.tvr_interval,
                       max_chars=self.max_chars)
        if self.seq_len < 3:
            raise MiMassiveError(f"--seq-len must be at least 3 (BOS + 2 tokens), got {self.seq_len}")
        if self.warmup < 0 or self.threads < 0:
            raise MiMassiveError("--warmup and --threads must be >= 0")
        if self.lr <= 0:
            raise MiMassiveError("--lr must be positive")
        if self.min_lr is not None and self.min_lr < 0:
            raise MiMassiveError("--min-lr must be >= 0")
        if self.tvr_target <= 0 or self.tvr_ratio <= 0:
            raise MiMassiveError("--tvr-target and --tvr-ratio must be positive")
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise MiMassiveError("--d-model must be divisible by --n-heads, and --n-heads by --n-kv-heads")
        cfg = TrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=self.seq_len, lr=self.lr,
                          min_lr=self.lr / 10 if self.min_lr is None else self.min_lr,
                          warmup=min(self.warmup, self.steps), seed=self.seed, trainable=self.trainable)
        toy = ToyConfig(n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                        d_mlp=4 * self.d_model, n_ctx=max(512, self.seq_len)) if self.base in TOY_KINDS else None
        tvr = TVRConfig(target_std=self.tvr_target, ratio_threshold=self.tvr_ratio, interval=self.tvr_interval,
                        scale_with_depth=self.tvr_depth)
        return cfg, toy, tvr

    def spec(self, name: str, tvr):
        """The VariantSpec of a variant name with the command's TVR config and per-norm DyT alpha0."""
        from dataclasses import replace

        from mi_massive.core.variants import DyTAlpha, VariantSpec

        alpha = DyTAlpha(default=self.dyt_alpha, attn=self.dyt_alpha_attn, mlp=self.dyt_alpha_mlp,
                         final=self.dyt_alpha_final)
        return replace(VariantSpec.parse(name, tvr=tvr), dyt_alpha=alpha)


_SHARED = [("base", BaseOpt, str), ("data", DataOpt, str), ("steps", StepsOpt, int), ("batch_size", BatchOpt, int),
           ("seq_len", SeqOpt, int), ("lr", LrOpt, float), ("min_lr", MinLrOpt, Optional[float]),
           ("warmup", WarmupOpt, int), ("seed", SeedOpt, int), ("trainable", TrainableOpt, str),
           ("n_layers", LayersOpt, int), ("d_model", DModelOpt, int), ("n_heads", HeadsOpt, int),
           ("n_kv_heads", KVHeadsOpt, int), ("tvr_target", TvrTargetOpt, float), ("tvr_interval", TvrIntervalOpt, int),
           ("tvr_ratio", TvrRatioOpt, float), ("tvr_depth", TvrDepthOpt, bool), ("tvr_at_start", TvrStartOpt, bool),
           ("dyt_alpha", AlphaOpt, float), ("dyt_alpha_attn", AlphaAttnOpt, Optional[float]),
           ("dyt_alpha_mlp", AlphaMlpOpt, Optional[float]), ("dyt_alpha_final", AlphaFinalOpt, Optional[float]),
           ("max_chars", MaxCharsOpt, Optional[int]), ("threads", ThreadsOpt, int)]


def train_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command ``f(opts: TrainOptions, **own_options)``: the shared training options are added once
    (after the first own option, so ``--variant(s)`` stays first in ``--help``).

    >>> @train_options
    ... def demo(opts: TrainOptions, variants: str = "baseline") -> None:
    ...     print(opts.base, opts.steps, variants)
    >>> [p for p in inspect.signature(demo).parameters][:3]
    ['variants', 'base', 'data']
    """
    shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, d, a in _SHARED]
    names = [p.name for p in shared]
    hints = typing.get_type_hints(func)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in list(inspect.signature(func).parameters.values())[1:]]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        return func(TrainOptions(**{n: kwargs.pop(n) for n in names}), **kwargs)

    wrapper.__signature__ = inspect.Signature(own[:1] + shared + own[1:])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in shared + own}
    del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
    return user_errors(wrapper)


@train_options
def train_variant_command(
    opts: TrainOptions,
    variant: str = typer.Option(..., "--variant", "-v", help="baseline, kv_bias, dyt, tvr, register or hybrids like tvr+kv_bias"),
    n_eval: int = typer.Option(16, "--n-eval", help="held-out windows"),
    out: Path = out_option(help="directory of the saved variant (load it with -m OUT)"),
) -> None:
    """Build a variant on a base model, train it (resumable), and save it as safetensors + JSON."""
    from mi_massive.analyses.variants.run import base_tokenizer, train_variant
    from mi_massive.training import load_streams

    cfg, toy, tvr = opts.configs()
    spec = opts.spec(variant, tvr)
    if n_eval < 1:
        raise MiMassiveError(f"--n-eval must be a positive integer, got {n_eval}")
    if out.exists() and not out.is_dir():
        raise MiMassiveError(f"--out {out} is a file; give a directory")
    tok = base_tokenizer(opts.base)
    train_stream, eval_stream = load_streams(tok, opts.data, max_chars=opts.max_chars)
    trained = train_variant(opts.base, spec, train_stream=train_stream,
                            eval_windows=eval_stream.windows(n_eval, opts.seq_len), cfg=cfg, out_dir=out,
                            toy_config=toy, tvr_at_start=opts.tvr_at_start)
    log = trained.log
    final = log["evals"][-1]["loss"] if log.get("evals") else float("nan")
    status = "reused" if trained.reused else f"{log.get('steps', 0)} steps in {trained.seconds:.0f} s"
    typer.echo(f"{spec.name}: eval loss {final:.4f} nats/token ({status}); saved to {out}")


@train_options
def compare_variants_command(
    opts: TrainOptions,
    variants: str = typer.Option("baseline,kv_bias,dyt,tvr,tvr+kv_bias,tvr+dyt,register", "--variants",
                                 help="comma-separated variant names"),
    n_eval: int = typer.Option(16, "--n-eval", help="held-out windows for the loss"),
    scan_windows: int = typer.Option(8, "--scan-windows", help="held-out windows scanned for massive activations"),
    out: Path = out_option("compare.json, compare.html, one dir per variant"),
) -> None:
    """Train every variant with the same budget and seed; report loss, scan and attention sinks side by side."""
    from mi_massive.analyses.variants.run import compare_variants

    cfg, toy, tvr = opts.configs()
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if not names:
        raise MiMassiveError("--variants is empty")
    specs = [opts.spec(n, tvr) for n in names]
    if n_eval < 1 or scan_windows < 1:
        raise MiMassiveError(f"--n-eval and --scan-windows must be positive integers, got {n_eval} and {scan_windows}")
    if scan_windows > n_eval:
        raise MiMassiveError("--scan-windows cannot exceed --n-eval")
    record = compare_variants(opts.base, specs, data=opts.data, cfg=cfg, out_dir=out, toy_config=toy, n_eval=n_eval,
                              scan_windows=scan_windows, max_chars=opts.max_chars, tvr_at_start=opts.tvr_at_start)
    print_comparison(record)
    typer.echo("wrote " + ", ".join([str(out / "compare.json"), *record.figure]))


def print_comparison(record) -> None:
    """Side-by-side table: loss, perplexity, max top-1, massive entries/dims, attention to pos 0 / slot."""
    rows = []
    for r in record.reports:
        a0 = max(r.attn_first_token) if r.attn_first_token else float("nan")
        slot = f"{max(r.attn_bias_slot):.2f}" if r.attn_bias_slot else "-"
        rows.append([r.name, r.train.get("steps", 0), f"{r.eval_loss:.4f}", f"{r.eval_ppl:.2f}",
                     f"{r.max_top1:.1f}", r.n_massive, ",".join(map(str, r.massive_dims[:5])) or "-",
                     f"{a0:.2f}", slot])
    echo_table(["variant", "steps", "eval loss", "ppl", "max top-1 |h|", "massive", "dims", "max attn pos0",
                "max attn slot"], rows)
