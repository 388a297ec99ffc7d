"""Every command's JSON on a planted toy equals the stored golden output (numbers and keys).

The golden files were written by ``tests/golden/make_golden.py`` before the package was reorganised;
a layout change must leave every number and key as it was. Regenerate them only for a deliberate,
documented change of a command's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from golden.make_golden import COMMANDS, planted_dir, run_command

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return planted_dir(tmp_path_factory.mktemp("golden-model"))


def assert_same(got, want, where="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(set(got) ^ set(want))} differ"
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, (int, float)) and math.isfinite(want):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_json_unchanged(name, model_dir, tmp_path):
    got = run_command(name, model_dir, tmp_path / "out")
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert_same(got, want)
