"""The variants comparison record (compare.json) and the shared training options of both commands."""

from __future__ import annotations

import inspect
import json

from mi_massive.analyses.variants import VariantComparison, VariantReport, figures
from mi_massive.analyses.variants.command import compare_variants_command, train_variant_command


def _report(name: str, slot: list[float]) -> VariantReport:
    return VariantReport(name=name, spec={"name": name}, path=None, eval_loss=5.0, eval_ppl=148.4, train={"steps": 3},
                         top1_per_layer=[3.0, 2.0], median_per_layer=[0.5, 0.4], n_massive=1, massive_dims=[5],
                         massive_positions={"0": 1}, max_top1=3.0, attn_first_token=[0.2, 0.3], attn_bias_slot=slot,
                         seconds_eval=0.1)


def test_comparison_round_trip_and_table(tmp_path):
    c = VariantComparison(provenance={"base": "toy-llama"}, reports=[_report("baseline", []),
                                                                     _report("kv_bias", [0.5, 0.6])])
    saved = json.loads(c.save(tmp_path / "compare.json").read_text())
    assert set(saved) == {"provenance", "reports", "figure", "seconds"}  # wall times kept apart in one block
    assert set(saved["reports"][0]) >= {"name", "eval_loss", "attn_bias_slot", "scan_summary"}
    back = VariantComparison.load(tmp_path / "compare.json")
    assert back == c and back.report("kv_bias").attn_bias_slot == [0.5, 0.6]
    df = back.to_dataframe()
    assert df["name"].tolist() == ["baseline", "kv_bias"] and "eval_loss" in df.columns
    assert figures(back)["compare"].layout.title.text == "toy-llama: variants"


def test_training_options_are_declared_once_and_shared():
    train = inspect.signature(train_variant_command).parameters
    compare = inspect.signature(compare_variants_command).parameters
    shared = ["base", "data", "steps", "batch_size", "seq_len", "lr", "min_lr", "warmup", "seed", "trainable",
              "n_layers", "d_model", "n_heads", "n_kv_heads", "tvr_target", "tvr_interval", "tvr_ratio", "tvr_depth",
              "tvr_at_start", "dyt_alpha", "dyt_alpha_attn", "dyt_alpha_mlp", "dyt_alpha_final", "max_chars", "threads"]
    for name in shared:
        assert train[name].default is compare[name].default, name
    assert list(train)[0] == "variant" and list(compare)[0] == "variants"
