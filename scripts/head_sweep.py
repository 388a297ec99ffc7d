"""Example: ablate every head alone (zero or mean) and rank heads by their effect on a massive entry.

The command ``mi-massive sweep`` does the same (plus every MLP, a ranked table and figures). This
script uses the fast sweep (one ablated head per batch row, starting from the cached residual); partial
results go to ``--partial`` so an interrupted run resumes where it stopped.

    .venv/bin/python scripts/head_sweep.py --model smollm2-135m --layer 12 --dim 507 --mode mean
"""

from __future__ import annotations

import argparse
import sys

import torch

import mi_massive as mm


def main() -> None:
    try:
        run()
    except mm.MiMassiveError as err:  # bad input: one line, exit 2 (as the commands do)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--dim", type=int, default=507)
    ap.add_argument("--mode", default="zero", choices=["zero", "mean"])
    ap.add_argument("--n-samples", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--partial", default="head_sweep.partial.json")
    ap.add_argument("--out", default="head_sweep.json")
    args = ap.parse_args()
    model = mm.load_model(args.model)
    corpus = mm.load_corpus(model, "builtin", n_samples=args.n_samples, seq_len=args.seq_len, seed=0)
    means = None
    if args.mode == "mean":
        means = mm.reference_means(model, corpus, [mm.act_name("z", l) for l in range(model.cfg.n_layers)])
    res = mm.sweep(model, corpus, [(args.layer, 0, args.dim)], mode=args.mode, means=means,
                     partial_path=args.partial)
    effect = torch.tensor(res.effect)[..., 0]  # [layer, head]
    order = effect.abs().flatten().argsort(descending=True)[:10]
    base = torch.tensor(res.baseline)[:, 0].mean().item()
    print(f"baseline h_{args.layer}[0, {args.dim}] = {base:.1f}; largest single-head effects:")
    for i in order.tolist():
        layer, head = divmod(i, model.cfg.n_heads)
        print(f"  L{layer}H{head}: {effect[layer, head]:+.1f}")
    res.save(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
