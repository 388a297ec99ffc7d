"""Example: ablate every head alone (zero or mean) and rank heads by their effect on a massive entry.

The command ``mi-massive sweep`` does the same (plus every MLP, a ranked table and figures). This
script uses the fast sweep (one ablated head per batch row, starting from the cached residual); partial
results go to ``--partial`` so an interrupted run resumes where it stopped.

    .venv/bin/python scripts/head_sweep.py --model smollm2-135m --layer 12 --dim 507 --mode mean

Errors follow the commands' policy: bad input, an unwritable ``--out``/``--partial`` or a full disk is one
``error:`` line and exit code 2 (checked before the model is loaded where possible); Ctrl-C says where
the partial results are and exits 130.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from pathlib import Path

import torch

import mi_massive as mm
from mi_massive.core.cli import check_positive
from mi_massive.core.io import ENVIRONMENT_ERRNOS, os_error_text


def main() -> None:
    try:
        run()
    except mm.MiMassiveError as err:  # bad input: one line, exit 2 (as the commands do)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:  # disk full, read-only directory: one line, not a traceback
        if err.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {os_error_text(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted (rerun the same command to resume from --partial)", file=sys.stderr)
        raise SystemExit(130) from None


def check_output_file(path: str, flag: str) -> Path:
    """``path`` as a file this script can write: not empty, not a directory, in a writable folder."""
    if not path.strip():
        raise mm.MiMassiveError(f"{flag} is empty; give a file name")
    p = Path(path)
    if p.is_dir():
        raise mm.MiMassiveError(f"{flag} {p} is a directory; give a file name")
    folder = p.parent
    if not folder.is_dir():
        raise mm.MiMassiveError(f"{flag} {p}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".head_sweep-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise mm.MiMassiveError(f"{flag} {p}: cannot write in {folder} ({err.strerror or err})") from err
    return p


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
    check_positive(n_samples=args.n_samples, seq_len=args.seq_len)
    if args.layer < 0 or args.dim < 0:
        raise mm.MiMassiveError(f"--layer and --dim must be >= 0, got {args.layer} and {args.dim}")
    out = check_output_file(args.out, "--out")
    partial = check_output_file(args.partial, "--partial")
    if out.resolve() == partial.resolve():
        raise mm.MiMassiveError("--out and --partial must be different files")
    model = mm.load_model(args.model)
    corpus = mm.load_corpus(model, "builtin", n_samples=args.n_samples, seq_len=args.seq_len, seed=0)
    means = None
    if args.mode == "mean":
        means = mm.reference_means(model, corpus, [mm.act_name("z", l) for l in range(model.cfg.n_layers)])
    res = mm.sweep(model, corpus, [(args.layer, 0, args.dim)], mode=args.mode, means=means,
                   partial_path=str(partial))
    effect = torch.tensor(res.effect)[..., 0]  # [layer, head]
    order = effect.abs().flatten().argsort(descending=True)[:10]
    base = torch.tensor(res.baseline)[:, 0].mean().item()
    print(f"baseline h_{args.layer}[0, {args.dim}] = {base:.1f}; largest single-head effects:")
    for i in order.tolist():
        layer, head = divmod(i, model.cfg.n_heads)
        print(f"  L{layer}H{head}: {effect[layer, head]:+.1f}")
    res.save(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
