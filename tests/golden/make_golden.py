"""Regenerate the golden command outputs: ``python tests/golden/make_golden.py``.

Each command of the CLI runs on the same planted toy (toy-llama, seed 0, one massive entry written
by block 1 into dim 5 at position 0), saved as a Hugging Face directory so the CLI can load it. The
normalised JSON of each command is stored here; ``tests/test_golden.py`` reruns the commands and
compares, so a refactor that changes any number or key fails.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLANT = [(1, 5, 3000.0)]
VOLATILE = {"created_utc", "versions"}
DEVICE_VOLATILE = {"name", "memory_bytes", "torch", "cuda"}  # machine facts inside provenance["device"]

COMMON = ["--corpus", "builtin", "--n-samples", "4", "--seq-len", "24", "--seed", "0"]
TEXT = "The cat sat on the mat. The dog ran."
COMMANDS = {
    "scan": (["scan", *COMMON, "--no-figures"], "scan.json"),
    "heads": (["heads", *COMMON], "heads.json"),
    "ablate": (["ablate", *COMMON, "--heads", "L1H0,L1H2", "--mlp", "1", "--n-null", "20"], "ablation.json"),
    "attribute": (["attribute", *COMMON], "attribution.json"),
    "patch": (["patch", "--clean", "abcde", "--corrupted", "abxde", "--metric", "entry:2:0:5"], "patching.json"),
    "intervene": (["intervene", "--corpus", "builtin", "--n-samples", "4", "--n-calib", "4", "--seq-len", "24",
                   "--n-control", "2", "--no-figures"], "intervene.json"),
    "mlp": (["mlp", *COMMON, "--no-figures"], "mlp.json"),
    "svd": (["svd", *COMMON, "--n-boot", "50", "--no-figures"], "svd.json"),
    "attention": (["attention", "--text", TEXT], "attention.json"),
    "tokens": (["tokens", *COMMON, "--n-boot", "50", "--no-figures"], "tokens.json"),
    "report": (["report", *COMMON], "report.json"),
    "compare-variants": (["compare-variants", "--base", "toy-llama", "--data", "{data}", "--variants", "baseline,kv_bias",
                          "--steps", "3", "--batch-size", "2", "--seq-len", "16", "--n-layers", "2", "--d-model", "32",
                          "--n-eval", "4", "--scan-windows", "2", "--warmup", "1"], "compare.json"),
}
NO_MODEL = {"compare-variants"}  # commands that build their own model


def planted_dir(root: Path) -> Path:
    """Save the planted toy as a Hugging Face directory under ``root`` and return it."""
    from mi_massive.core.loading import toy_tokenizer
    from mi_massive.core.loading.toy import build_toy_hf, plant_massive_activation

    folder = root / "planted-toy-llama"
    if not (folder / "config.json").exists():
        hf = build_toy_hf("toy-llama", seed=0)
        for layer, dim, value in PLANT:
            plant_massive_activation(hf, layer, dim, value)
        hf.save_pretrained(str(folder))
        toy_tokenizer().save_pretrained(str(folder))
    return folder


def normalise(obj, roots: tuple[str, ...] = ()):
    """Drop volatile fields (time stamps, versions, timings); paths under ``roots`` become ``<tmp>/...``;
    floats rounded to 9 significant digits."""
    if isinstance(obj, dict):
        if "memory_bytes" in obj and "torch" in obj:  # provenance["device"]: keep type, device, map, count
            obj = {k: v for k, v in obj.items() if k not in DEVICE_VOLATILE}
        if "top_tokens_by_cos" in obj:  # rows past the massive tokens have cos ~1e-16: their order is float noise
            obj = {**obj, "top_tokens_by_cos": [r for r in obj["top_tokens_by_cos"] if abs(r["cos"]) > 1e-9]}
        if "top_components_for_dim" in obj:  # likewise: components with weight ~1e-17 on the planted dim
            obj = {**obj, "top_components_for_dim": [r for r in obj["top_components_for_dim"] if abs(r["weight"]) > 1e-9]}
        return {k: normalise(v, roots) for k, v in obj.items() if k not in VOLATILE and not k.startswith("seconds")}
    if isinstance(obj, list):
        return [normalise(v, roots) for v in obj]
    if isinstance(obj, str):
        for root in roots:
            obj = obj.replace(root, "<tmp>")
        return obj
    if isinstance(obj, float) and math.isfinite(obj):
        return float(f"{obj:.9g}")
    return obj


def run_command(name: str, model_dir: Path, out: Path) -> dict:
    from typer.testing import CliRunner

    from mi_massive.cli import app

    args, json_name = COMMANDS[name]
    data = out / "train.txt"
    if not data.exists():
        out.mkdir(parents=True, exist_ok=True)
        data.write_text(" ".join(f"The number {i} follows {i - 1}." for i in range(1, 400)), encoding="utf-8")
    args = [a.replace("{data}", str(data)) for a in args]
    if name not in NO_MODEL:
        args += ["--prepend-bos", "--model", str(model_dir)]
    result = CliRunner().invoke(app, [*args, "--out", str(out / name)])
    if result.exit_code != 0:
        raise RuntimeError(f"{name} failed: {result.output}\n{result.exception!r}")
    return normalise(json.loads((out / name / json_name).read_text()), (str(model_dir.parent), str(out.parent)))


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = planted_dir(Path(tmp))
        for name in (sys.argv[1:] or COMMANDS):
            data = run_command(name, model_dir, Path(tmp) / "out")
            (HERE / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            print("wrote", name)


if __name__ == "__main__":
    main()
