"""Example: does the massive activation depend on the first token? Patch the first token's residual.

Clean prompt starts with one token, the corrupted prompt with another; the metric is the massive
entry h_L[0, d]. Patching resid_pre at position 0 of any layer <= L restores it (position 0 sees only
itself), patching other positions does nothing -- the grid shows where the value is decided.

    .venv/bin/python scripts/patch_first_token.py --model smollm2-135m --layer 12 --dim 507
"""

from __future__ import annotations

import argparse

import torch

import mi_massive as mm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--dim", type=int, default=507)
    ap.add_argument("--clean", default="The weather is warm today.")
    ap.add_argument("--corrupted", default="A weather is warm today.")
    ap.add_argument("--out", default="patch_first_token.json")
    args = ap.parse_args()
    model = mm.load_model(args.model)
    clean, corrupted = (torch.tensor(mm.text_corpus(model, t).sequences) for t in (args.clean, args.corrupted))
    res = mm.patch(model, clean, corrupted, metric=f"entry:{args.layer}:0:{args.dim}", components=["resid_pre"])
    grid = torch.tensor(res.results["resid_pre"])
    print(f"clean {res.clean:.1f}  corrupted {res.corrupted:.1f}")
    for layer in range(args.layer + 1):
        print(f"layer {layer:2d}: patch pos 0 -> {grid[layer, 0]:10.1f}   patch pos 1 -> {grid[layer, 1]:10.1f}")
    res.save(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
