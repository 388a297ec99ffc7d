"""The ``>>>`` examples of the package run and print what they say: one test per module that has any.

Modules are found statically (a ``>>>`` in the file), so one broken module fails its own test only.
Examples use toy models (``mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])``) and must be fast:
each module's examples must finish in :data:`BUDGET_S` seconds. ``doctest`` runs with ELLIPSIS and
NORMALIZE_WHITESPACE, in a fresh namespace per docstring, offline.
"""

from __future__ import annotations

import doctest
import importlib
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mi_massive"
BUDGET_S = 30.0  # per module (each example: a few seconds at most)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(module_name(p) for p in PKG.rglob("*.py") if ">>>" in p.read_text(encoding="utf-8"))


def run_doctests(name: str) -> tuple[doctest.TestResults, str, int]:
    """Run every example of module ``name``; return the results, the failure report and the example count."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name) if t.examples]
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.append, clear_globs=True)
    return runner.summarize(verbose=False), "".join(report), sum(len(t.examples) for t in tests)


def test_public_face_has_examples():
    assert "mi_massive" in MODULES and "mi_massive.figures" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    results, report, n_examples = run_doctests(name)
    seconds = time.perf_counter() - start
    assert results.failed == 0, f"{name}: {results.failed} of {results.attempted} examples failed\n{report}"
    if n_examples == 0:
        pytest.skip(f"{name}: '>>>' only in comments or strings, no docstring example")
    assert seconds < BUDGET_S, f"{name}: examples took {seconds:.1f} s (budget {BUDGET_S:.0f} s); use smaller toys"
