"""A small CPU training loop for HF causal LMs (tiny GPT-2/Llama shapes, or continued training of SmolLM2).

AdamW (weight decay on >= 2-D parameters, as nanoGPT/Sun et al. do, so k'/v' are decayed too), linear
warmup then cosine decay to ``min_lr``, gradient-norm clipping, a fixed seed, a tqdm bar, and a resumable
checkpoint (model + optimiser + log) written atomically every ``checkpoint_every`` steps. Callbacks run
after every optimiser step (TVR is one). The model is the plain HF model; bridge it after training.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
planted pickle cannot run code (it is refused with a one-line error). A checkpoint records the identity
of its run (``train(identity=...)``: variant, base, data); resuming it for another run is refused.

Loss: mean next-token cross entropy (nats/token) over the predictions made at positions 1..T-2 of each
BOS-prefixed window. The prediction made at position 0 (from BOS, or from the register) is never scored,
for every variant, so variants with a register token are compared on the same targets.
"""

from __future__ import annotations

import io
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch
from jaxtyping import Float, Int
from torch import nn
from tqdm.auto import tqdm

from mi_massive.core.stats import token_nll
from mi_massive.errors import MiMassiveError
from mi_massive.training.data import TokenStream
from mi_massive.core.variants.tvr import TVRConfig, tvr_rescale

CHECKPOINT = "checkpoint.pt"
NEW_PARAM_MARKERS = ("k_bias", "v_bias", "register_vector")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``lr``/``min_lr`` are AdamW step sizes; ``steps`` counts optimiser steps."""

    steps: int = 200
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    trainable: str = "all"  # "all" or "new" (only the variant's new parameters: k'/v', DyT, register)
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        floats = {"lr": self.lr, "min_lr": self.min_lr, "weight_decay": self.weight_decay,
                  "grad_clip": self.grad_clip, "beta1": self.betas[0], "beta2": self.betas[1]}
        for name, value in floats.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise MiMassiveError(f"{name} must be a finite number, got {value}")
        if self.steps < 1 or self.batch_size < 1 or self.warmup < 0:
            raise MiMassiveError("steps and batch_size must be positive, warmup non-negative")
        if self.lr <= 0 or self.min_lr < 0 or self.weight_decay < 0 or not all(0 <= b < 1 for b in self.betas):
            raise MiMassiveError("lr must be > 0, min_lr and weight_decay >= 0, betas in [0, 1)")
        if self.seq_len < 3:
            raise MiMassiveError(f"seq_len must be at least 3 (BOS + 2 tokens), got {self.seq_len}")
        if self.trainable not in ("all", "new"):
            raise MiMassiveError(f"trainable must be 'all' or 'new', got '{self.trainable}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warmup, then cosine to ``min_lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(cfg.steps - cfg.warmup, 1)
    progress = min((step - cfg.warmup) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def lm_loss(logits: Float[torch.Tensor, "batch pos vocab"], ids: Int[torch.Tensor, "batch pos"]) -> torch.Tensor:
    """Mean CE (nats, float32) of predictions at positions 1..T-2 for targets 2..T-1 (position 0 is never scored).

    >>> round(float(lm_loss(torch.zeros(2, 4, 8), torch.zeros(2, 4, dtype=torch.long))), 4)  # uniform: log 8
    2.0794

    A view of the one NLL, :func:`mi_massive.core.stats.token_nll`, on the sequence without position 0.
    """
    nll, _ = token_nll(logits[:, 1:], ids[:, 1:], dtype=torch.float32)
    return nll.mean()


def model_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits of an HF model or a bridge."""
    out = model(ids)
    return out.logits if hasattr(out, "logits") else out


@torch.no_grad()
def evaluate(model: nn.Module, windows: Int[torch.Tensor, "n pos"], *, batch_size: int = 16) -> float:
    """Mean :func:`lm_loss` over ``windows`` (token-weighted; all windows have the same length)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        ids = windows[i:i + batch_size]
        total += lm_loss(model_logits(model, ids), ids).item() * len(ids)
        count += len(ids)
    model.train(was_training)
    return total / count


def select_parameters(model: nn.Module, trainable: str) -> list[tuple[str, nn.Parameter]]:
    """The parameters to optimise: all, or only the variant's new ones (k'/v', register, every DyT parameter)."""
    from mi_massive.core.variants.dyt import DyT

    named = list(model.named_parameters())
    if trainable == "all":
        return named
    dyt_ids = {id(p) for m in model.modules() if isinstance(m, DyT) for p in m.parameters()}
    chosen = [(n, p) for n, p in named if any(k in n for k in NEW_PARAM_MARKERS) or id(p) in dyt_ids]
    if not chosen:
        raise MiMassiveError("trainable='new' but the model has no variant parameters (baseline/TVR-only)")
    return chosen


class Callback(Protocol):
    def on_step_end(self, step: int, model: nn.Module, log: "TrainLog") -> None: ...


@dataclass
class TVRCallback:
    """Apply TVR after every ``config.interval``-th optimiser step (1-based count, as the reference callback)."""

    config: TVRConfig

    def on_step_end(self, step: int, model: nn.Module, log: "TrainLog") -> None:
        if (step + 1) % self.config.interval == 0:
            records = tvr_rescale(model, self.config)
            log.tvr_events.append({"step": step + 1, "rescaled": sum(r.rescaled for r in records),
                                   "matrices": len(records)})


@dataclass
class TrainLog:
    """What happened: per-step loss and lr, evaluations, TVR events, wall time (seconds)."""

    config: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    tvr_events: list[dict[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    n_trainable: int = 0

    @property
    def step(self) -> int:
        return len(self.losses)


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, log: TrainLog,
                     identity: dict[str, Any] | None = None) -> None:
    from mi_massive.core.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "log": asdict(log),
                "identity": identity}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a training checkpoint (``model``, ``optimizer``, ``log``, ``identity``), read safely.

    ``torch.load(weights_only=True)`` unpickles tensors and plain containers only; anything else (a planted
    ``__reduce__`` payload) is refused before it can run, as is a damaged or truncated file -- each with a
    one-line :class:`MiMassiveError` that names the file and says to delete it to start over.
    """
    path = Path(path)
    fix = "delete it to start over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only
    except pickle.UnpicklingError as err:
        raise MiMassiveError(f"checkpoint {path} holds objects other than tensors and plain containers; refusing "
                             f"to load it (it could run code); {fix}") from err
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise MiMassiveError(f"checkpoint {path} is damaged or truncated ({first}); {fix}") from err
    ok = (isinstance(state, dict) and {"model", "optimizer", "log"} <= set(state) and isinstance(state["log"], dict)
          and isinstance(state["log"].get("config"), dict))
    if not ok:
        raise MiMassiveError(f"checkpoint {path} is not a mi_massive training checkpoint; {fix}")
    return state


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig,
                     identity: dict[str, Any] | None = None) -> TrainLog | None:
    state = read_checkpoint(path)
    if identity is not None and state.get("identity") != identity:
        theirs = (state.get("identity") or {}).get("variant", {}) if isinstance(state.get("identity"), dict) else {}
        what = f"variant '{theirs.get('name')}'" if isinstance(theirs, dict) and theirs.get("name") else "another run"
        raise MiMassiveError(f"checkpoint {path} belongs to {what}, not to this run "
                             f"('{(identity.get('variant') or {}).get('name', '?')}' with these settings); "
                             "use another directory")
    saved = dict(state["log"]["config"])
    saved.pop("eval_every", None), saved.pop("checkpoint_every", None)
    now = cfg.to_dict()
    now.pop("eval_every"), now.pop("checkpoint_every")
    if {k: (list(v) if isinstance(v, tuple) else v) for k, v in saved.items()} != \
       {k: (list(v) if isinstance(v, tuple) else v) for k, v in now.items()}:
        raise MiMassiveError(f"checkpoint {path} was made with a different training config; use another directory")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        log = TrainLog(**state["log"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise MiMassiveError(f"checkpoint {path} does not fit this model ({first}); use another directory") from err
    log.resumed_from = log.step
    return log


def train(
    model: nn.Module,
    data: TokenStream,
    cfg: TrainConfig,
    *,
    eval_windows: Int[torch.Tensor, "n pos"] | None = None,
    callbacks: Iterable[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    progress: bool | str = True,
    identity: dict[str, Any] | None = None,
) -> TrainLog:
    """Train ``model`` (an HF causal LM, in place) for ``cfg.steps`` optimiser steps; returns the log.

    With ``checkpoint_dir`` an existing ``checkpoint.pt`` made with the same config is resumed, and a new
    one is written every ``cfg.checkpoint_every`` steps and at the end. ``identity`` (plain JSON data: the
    variant, base model, data) is stored in the checkpoint; a checkpoint of another identity is refused
    instead of resumed. Runs are deterministic for a given seed and thread count (dropout is switched off:
    every ``nn.Dropout`` gets p = 0).
    """
    torch.manual_seed(cfg.seed)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    chosen = select_parameters(model, cfg.trainable)
    chosen_ids = {id(p) for _, p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen_ids)
    decay = [p for _, p in chosen if p.ndim >= 2]
    no_decay = [p for _, p in chosen if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    log = None
    if ckpt is not None and ckpt.is_file():
        log = _load_checkpoint(ckpt, model, opt, cfg, identity)
    if log is None:
        log = TrainLog(config=cfg.to_dict())
    log.n_trainable = sum(p.numel() for _, p in chosen)
    callbacks = list(callbacks)
    label = progress if isinstance(progress, str) else "train"
    bar = tqdm(total=cfg.steps, initial=log.step, desc=label, disable=not progress, leave=False)
    model.train()
    start = time.perf_counter()
    try:
        for step in range(log.step, cfg.steps):
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            ids = data.batch(step, cfg.batch_size, cfg.seq_len, cfg.seed)
            loss = lm_loss(model_logits(model, ids), ids)
            if not torch.isfinite(loss):
                raise MiMassiveError(f"training diverged at step {step}: loss {loss.item()}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in chosen], cfg.grad_clip)
            opt.step()
            log.losses.append(loss.item())
            log.lrs.append(lr)
            for cb in callbacks:
                cb.on_step_end(step, model, log)
            if eval_windows is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                log.evals.append({"step": step + 1, "loss": evaluate(model, eval_windows)})
                model.train()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if ckpt is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                log.seconds += time.perf_counter() - start
                start = time.perf_counter()
                _save_checkpoint(ckpt, model, opt, log, identity)
    finally:
        bar.close()
        log.seconds += time.perf_counter() - start
        model.eval()
    if eval_windows is not None and (not log.evals or log.evals[-1]["step"] != cfg.steps):
        log.evals.append({"step": cfg.steps, "loss": evaluate(model, eval_windows)})
    if ckpt is not None:
        _save_checkpoint(ckpt, model, opt, log, identity)
    for p in model.parameters():
        p.requires_grad_(True)
    return log
