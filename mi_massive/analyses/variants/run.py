"""Train variants and compare them side by side: loss/perplexity, scan, attention sinks, one figure.

Every variant of a comparison starts from the same base weights (same seed), sees the same training
batches (same seed, same budget) and is evaluated on the same held-out windows. Per variant:

* ``eval_loss`` (nats/token, :func:`mi_massive.training.lm_loss`) and ``eval_ppl`` = exp(eval_loss);
* the massive-activation scan of the evaluation windows (top-1 |h| per layer, detected massive entries);
* attention mass per layer: the mean over batch, heads and queries q >= 1 of the attention paid to the
  first token (position 0) and, for KV-bias variants, to the bias slot (``hook_pattern`` key column 0).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mi_massive.errors import MiMassiveError
from mi_massive.core.loading import ToyConfig, TOY_KINDS
from mi_massive.training import TrainConfig, TVRCallback, evaluate, load_streams, train
from mi_massive.training.data import TokenStream
from mi_massive.core.variants import VariantSpec, apply_variant, bridge_variant, has_kv_bias
from mi_massive.core.loading.specs import VARIANT_CONFIG
from mi_massive.core.variants.io import load_variant_hf, read_variant_meta, save_variant
from mi_massive.core.variants.tvr import tvr_rescale
from mi_massive.analyses.variants.record import VariantComparison, VariantReport
from mi_massive.core.names import act_name


def _base_folder(base: str) -> Path:
    """The HF directory of a non-toy base (an alias's GGUF or a .gguf file is converted once and cached)."""
    from mi_massive.core.loading import ALIASES, alias_path
    from mi_massive.core.loading.gguf import converted_gguf_dir

    if base in ALIASES:
        path = alias_path(ALIASES[base])
        if path is None:
            raise MiMassiveError(f"model alias '{base}' needs its package: {ALIASES[base].install}")
        return converted_gguf_dir(path)[0]
    p = Path(base).expanduser()
    folder = converted_gguf_dir(p.resolve())[0] if p.suffix.lower() == ".gguf" and p.is_file() else p
    if not (folder / "config.json").is_file():
        raise MiMassiveError(f"base model '{base}': not a toy, an alias, a .gguf file or an HF directory")
    return folder


def base_tokenizer(base: str):
    """The tokenizer of a base, without loading its weights."""
    from transformers import AutoTokenizer

    from mi_massive.core.loading import toy_tokenizer

    if base in TOY_KINDS:
        return toy_tokenizer()
    return AutoTokenizer.from_pretrained(str(_base_folder(base)))


def base_hf(base: str, *, seed: int = 0, toy_config: ToyConfig | None = None):
    """(plain HF model in eval mode, tokenizer) of a base: ``toy-gpt2``/``toy-llama``, an alias, a .gguf or HF dir."""
    from transformers import AutoModelForCausalLM

    from mi_massive.core.loading import build_toy_hf

    if base in TOY_KINDS:
        return build_toy_hf(base, seed=seed, config=toy_config), base_tokenizer(base)
    folder = _base_folder(base)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    return hf.eval(), base_tokenizer(base)


@dataclass
class TrainedVariant:
    """A trained (or loaded) variant: the plain HF model, its tokenizer, where it is saved, and its training log."""

    name: str
    spec: VariantSpec
    model: nn.Module
    tokenizer: Any
    path: Path | None
    log: dict[str, Any]
    reused: bool = False
    seconds: float = 0.0  # wall time of this call's training (0 when reused); kept out of ``log``


def train_variant(
    base: str,
    spec: VariantSpec,
    *,
    train_stream: TokenStream,
    eval_windows: torch.Tensor,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    toy_config: ToyConfig | None = None,
    tvr_at_start: bool = False,
    progress: bool = True,
    reuse: bool = True,
) -> TrainedVariant:
    """Build ``spec`` on ``base`` (base weights from ``cfg.seed``) and train it; save to ``out_dir`` if given.

    >>> import tempfile
    >>> from mi_massive.training import TrainConfig, load_streams
    >>> from mi_massive.core.loading import ToyConfig
    >>> from mi_massive.core.corpus import builtin_text
    >>> from mi_massive.core.variants import VariantSpec
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = (tmp / "train.txt").write_text(builtin_text()[:20000], encoding="utf-8")
    >>> train_s, eval_s = load_streams(base_tokenizer("toy-llama"), str(tmp / "train.txt"))
    >>> cfg = TrainConfig(steps=2, batch_size=2, seq_len=16, lr=1e-3, min_lr=1e-4, warmup=1, seed=0)
    >>> toy = ToyConfig(n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, d_mlp=128, n_ctx=512)
    >>> v = train_variant("toy-llama", VariantSpec.parse("kv_bias"), train_stream=train_s,
    ...                   eval_windows=eval_s.windows(2, 16), cfg=cfg, toy_config=toy, progress=False)
    >>> v.name, v.log["steps"], v.log["evals"][-1]["loss"] > 0  # eval loss in nats/token
    ('kv_bias', 2, True)

    ``tvr_at_start`` applies TVR once before training (the one-off transform). With ``cfg.trainable ==
    'new'`` a spec without new parameters (baseline, TVR only) is not trained (0 steps). A finished
    variant already in ``out_dir`` with the same spec and config is loaded instead (``reuse``); a
    directory holding another variant, or the same variant trained with other settings (finished or as a
    checkpoint), is refused with a one-line error rather than resumed or overwritten.
    The training time is kept apart from the log (``extra.seconds`` of the saved variant), so the same seed
    gives the same log.
    """
    out = Path(out_dir) if out_dir is not None else None
    record = {"base": base, "train": cfg.to_dict(), "toy_config": asdict(toy_config) if toy_config else None,
              "tvr_at_start": tvr_at_start, "data": train_stream.source}
    identity = _jsonable({"variant": spec.to_dict(), **record, "train": {k: v for k, v in cfg.to_dict().items()
                                                                          if k not in ("eval_every", "checkpoint_every")}})
    if out is not None and (out / VARIANT_CONFIG).is_file():
        meta = read_variant_meta(out)
        if meta["variant"] != spec.to_dict():
            raise MiMassiveError(f"{out} holds the variant '{meta['variant'].get('name')}', not '{spec.name}'; "
                                 "use another output directory (or delete that one)")
        if meta.get("extra", {}).get("record") != _jsonable(record):
            saved = (meta.get("extra") or {}).get("record") or {}
            differ = sorted(k for k in set(saved) | set(record) if saved.get(k) != _jsonable(record).get(k))
            raise MiMassiveError(f"{out} holds '{spec.name}' trained with other settings ({', '.join(differ) or '?'}); "
                                 "use another output directory (or delete that one)")
        if reuse:
            hf, tok, meta = load_variant_hf(out)
            return TrainedVariant(spec.name, spec, hf, tok, out, meta["extra"]["log"], reused=True)
    hf, tok = base_hf(base, seed=cfg.seed, toy_config=toy_config)
    apply_variant(hf, spec, seed=cfg.seed)
    tvr_records = tvr_rescale(hf, spec.tvr) if (tvr_at_start and spec.tvr) else []
    trains = cfg.trainable == "all" or spec.structural
    if trains:
        callbacks = [TVRCallback(spec.tvr)] if spec.tvr else []
        log = train(hf, train_stream, cfg, eval_windows=eval_windows, callbacks=callbacks,
                    checkpoint_dir=(out / "checkpoint") if out is not None else None,
                    progress=f"train {spec.name}" if progress else False, identity=identity)
        log_d = {"steps": log.step, "final_train_loss": _mean_tail(log.losses), "losses": log.losses,
                 "evals": log.evals, "tvr_events": log.tvr_events,
                 "n_trainable": log.n_trainable, "resumed_from": log.resumed_from}
        seconds = log.seconds
    else:
        log_d = {"steps": 0, "note": "no new parameters to train (trainable='new'): evaluated as built",
                 "evals": [{"step": 0, "loss": evaluate(hf, eval_windows)}]}
        seconds = 0.0
    log_d["tvr_at_start"] = sum(r.rescaled for r in tvr_records)
    if out is not None:
        save_variant(hf, out, spec=spec, tokenizer=tok, base=base,
                     extra={"record": _jsonable(record), "log": log_d, "seconds": {"train": seconds}})
    return TrainedVariant(spec.name, spec, hf, tok, out, log_d, seconds=seconds)


def _mean_tail(values: Sequence[float], n: int = 20) -> float | None:
    tail = list(values)[-n:]
    return sum(tail) / len(tail) if tail else None


def _jsonable(obj: Any) -> Any:
    import json

    from mi_massive.core.io import to_json

    return json.loads(to_json(obj))


@torch.no_grad()
def attention_mass(bridge, ids: torch.Tensor, *, skip_queries: int = 1) -> dict[str, list[float]]:
    """Per layer, mean attention (over batch, heads, queries q >= ``skip_queries``) to position 0 and the bias slot.

    Reads ``blocks.L.attn.hook_pattern`` [batch, heads, q, k] (KV bias: [.., 1 + k], column 0 = slot) in one
    forward pass; each pattern is reduced inside its hook, so no pattern is kept. ``first_token`` is the
    mass on token position 0; ``bias_slot`` is empty for models without a KV bias.
    """
    kv = has_kv_bias(bridge)
    n = bridge.cfg.n_layers
    first, slot = [0.0] * n, [0.0] * n

    def reducer(layer: int):
        def hook(pattern: torch.Tensor, hook) -> None:
            pat = pattern[:, :, skip_queries:].float()
            first[layer] = pat[..., 1 if kv else 0].mean().item()
            slot[layer] = pat[..., 0].mean().item() if kv else 0.0

        return hook

    hooks = [(act_name("pattern", layer), reducer(layer)) for layer in range(n)]
    with bridge.hooks(fwd_hooks=hooks):
        bridge(ids)
    return {"first_token": first, "bias_slot": slot if kv else []}


def evaluate_variant(trained: TrainedVariant, eval_windows: torch.Tensor, *, scan_windows: int = 8,
                     abs_threshold: float = 100.0, rel_threshold: float = 1000.0) -> tuple[VariantReport, Any]:
    """Bridge the variant and measure it; returns (report, ScanResult). Timing is not part of the report
    (:func:`compare_variants` keeps it in the comparison's separate ``seconds`` block)."""
    from mi_massive.core.corpus import Corpus
    from mi_massive.core.loading.bridge import attach_info, describe
    from mi_massive.analyses.scan.run import scan

    if scan_windows < 1 or len(eval_windows) < 1:
        raise MiMassiveError(f"scan_windows must be positive and there must be evaluation windows, got "
                             f"{scan_windows} of {len(eval_windows)}")
    bridge = bridge_variant(trained.model, trained.tokenizer, name=trained.name)
    attach_info(bridge, describe(bridge, spec=str(trained.path or trained.name), source="variant",
                                 name=trained.name, fingerprint=f"variant:{trained.name}",
                                 path=str(trained.path) if trained.path else None, extra={"variant": trained.spec.to_dict()}))
    loss = evaluate(bridge, eval_windows)
    with torch.no_grad():  # the bridge must compute what the patched HF model computes (see docs/variants.md)
        check = eval_windows[:1]
        bridge_diff = (bridge(check) - trained.model(check).logits).abs().max().item()
    tok = trained.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else int(eval_windows[0, 0])
    windows = eval_windows[:scan_windows]
    corpus = Corpus(name="eval-windows", sequences=windows.tolist(), prepend_bos=True, seq_len=windows.shape[1],
                    n_samples=len(windows), seed=0, bos_token_id=int(windows[0, 0]), pad_token_id=int(pad),
                    source={"kind": "training eval windows"})
    result = scan(bridge, corpus, abs_threshold=abs_threshold, rel_threshold=rel_threshold, progress=False)
    attn = attention_mass(bridge, windows[: min(4, len(windows))])
    blocks = [r for r in result.layers if r.layer >= 0]
    report = VariantReport(
        name=trained.name, spec=trained.spec.to_dict(), path=str(trained.path) if trained.path else None,
        eval_loss=loss, eval_ppl=math.exp(loss), train={k: v for k, v in trained.log.items() if k != "losses"},
        top1_per_layer=[r.top_values[0] for r in blocks], median_per_layer=[r.median for r in blocks],
        n_massive=result.summary.n_entries, massive_dims=sorted(d.dim for d in result.summary.dims),
        massive_positions={str(p.position): p.count for p in result.summary.positions},
        max_top1=max(r.top1_max for r in blocks),
        attn_first_token=attn["first_token"], attn_bias_slot=attn["bias_slot"],
        bridge_vs_hf_max_abs_diff=bridge_diff, scan_summary=result.summary,
    )
    return report, result


def compare_variants(
    base: str,
    variants: Sequence[str | VariantSpec],
    *,
    data: str,
    cfg: TrainConfig,
    out_dir: str | Path,
    toy_config: ToyConfig | None = None,
    n_eval: int = 16,
    scan_windows: int = 8,
    max_chars: int | None = None,
    tvr_at_start: bool = False,
    progress: bool = True,
) -> VariantComparison:
    """Train (or reuse) every variant with the same budget and seed, evaluate, write ``compare.json`` + figure.

    >>> import tempfile
    >>> from mi_massive.training import TrainConfig
    >>> from mi_massive.core.loading import ToyConfig
    >>> from mi_massive.core.corpus import builtin_text
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = (tmp / "train.txt").write_text(builtin_text()[:20000], encoding="utf-8")
    >>> cfg = TrainConfig(steps=2, batch_size=2, seq_len=16, lr=1e-3, min_lr=1e-4, warmup=1, seed=0)
    >>> toy = ToyConfig(n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, d_mlp=128, n_ctx=512)
    >>> c = compare_variants("toy-llama", ["baseline", "kv_bias"], data=str(tmp / "train.txt"), cfg=cfg,
    ...                      out_dir=tmp / "cmp", toy_config=toy, n_eval=2, scan_windows=2, progress=False)
    >>> [r.name for r in c.reports], bool(c.report("kv_bias").attn_bias_slot)
    (['baseline', 'kv_bias'], True)
    >>> type(c.load(tmp / "cmp" / "compare.json")).__name__
    'VariantComparison'

    Returns a :class:`~mi_massive.analyses.variants.record.VariantComparison`: ``provenance``, ``reports``
    (one :class:`VariantReport` per variant: eval loss in nats/token, scan, attention mass), ``figure``
    paths and ``seconds`` (every wall time, in one block: the rest of ``compare.json`` is the same bytes for
    the same seed and thread count, apart from ``provenance.created_utc``). Each variant is saved under
    ``out_dir/<name>`` (loadable with ``load_model``).
    """
    from mi_massive.core.io import package_versions, prepare_out_dir, utc_now
    from mi_massive.analyses.variants.figures import comparison_figure
    from mi_massive.core.html import save_figure

    if n_eval < 1 or scan_windows < 1:
        raise MiMassiveError(f"n_eval and scan_windows must be positive, got {n_eval} and {scan_windows}")
    if scan_windows > n_eval:
        raise MiMassiveError("scan_windows cannot exceed n_eval")
    specs = [v if isinstance(v, VariantSpec) else VariantSpec.parse(v) for v in variants]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise MiMassiveError(f"duplicate variants in {names}")
    out = prepare_out_dir(out_dir)
    tok = base_tokenizer(base)
    train_stream, eval_stream = load_streams(tok, data, max_chars=max_chars)
    eval_windows = eval_stream.windows(n_eval, cfg.seq_len)
    reports, t0 = [], time.perf_counter()
    seconds: dict[str, Any] = {"variants": {}}
    for spec in specs:
        trained = train_variant(base, spec, train_stream=train_stream, eval_windows=eval_windows, cfg=cfg,
                                out_dir=out / spec.name, toy_config=toy_config, tvr_at_start=tvr_at_start,
                                progress=progress)
        t_eval = time.perf_counter()
        report, result = evaluate_variant(trained, eval_windows, scan_windows=scan_windows)
        seconds["variants"][spec.name] = {"train": trained.seconds, "eval": time.perf_counter() - t_eval,
                                          "reused": trained.reused}
        result.save(out / spec.name / "scan.json")
        reports.append(report)
        del trained
    seconds["total"] = time.perf_counter() - t0
    provenance = {"base": base, "data": data, "train_stream": train_stream.source,
                  "eval_stream": eval_stream.source, "n_eval": n_eval, "scan_windows": scan_windows,
                  "train": cfg.to_dict(), "toy_config": asdict(toy_config) if toy_config else None,
                  "tvr_at_start": tvr_at_start, "versions": package_versions(), "created_utc": utc_now(),
                  "threads": torch.get_num_threads()}
    record = VariantComparison(provenance=provenance, reports=reports, seconds=seconds)
    record.figure = [str(p) for p in save_figure(comparison_figure(record), out / "compare")]
    record.save(out / "compare.json")
    return record
