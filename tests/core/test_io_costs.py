"""Costs kept bounded without changing what is written: the ``--out`` manifest of a run that writes many files
(not rewritten on every write) and the model cache's stale-temp cleaning (once per process per root)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from mi_massive.core import io
from mi_massive.core.io import OutRun, atomic_write_bytes, check_out_dir, out_dir_run, read_manifest
from mi_massive.core.loading import cache


def _count_saves(monkeypatch) -> list[str]:
    saves: list[str] = []
    real = OutRun._save

    def counting(self, status, **kwargs):
        saves.append(status)
        return real(self, status, **kwargs)

    monkeypatch.setattr(OutRun, "_save", counting)
    return saves


def _kill(run: OutRun) -> None:
    """What SIGKILL leaves: no finish(), the lock released by the OS."""
    io._ACTIVE_RUNS.remove(run)
    run._release()


# ------------------------------------------------------------------------------------ manifest
def test_many_writes_rewrite_the_manifest_at_start_first_write_and_end(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MANIFEST_EVERY_S", 3600.0)
    saves = _count_saves(monkeypatch)
    out = tmp_path / "out"
    with out_dir_run(out, "demo"):
        for i in range(50):
            atomic_write_bytes(out / "units" / f"u{i}.json", f"{i}".encode())
        during = read_manifest(out)
    assert saves == ["running", "running", "complete"]  # start, first write, end
    assert during["status"] == "running" and list(during["files"]) == ["units/u0.json"]
    final = read_manifest(out)
    assert final["status"] == "complete" and check_out_dir(out) == []
    assert len(final["files"]) == 50 and {e["run"] for e in final["files"].values()} == {final["run"]}
    assert final["files"]["units/u7.json"] == {"run": final["run"], "bytes": 1,
                                               "sha256": hashlib.sha256(b"7").hexdigest()}


def test_writes_rewrite_the_manifest_again_once_the_interval_has_passed(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MANIFEST_EVERY_S", 0.0)
    saves = _count_saves(monkeypatch)
    out = tmp_path / "out"
    with out_dir_run(out, "demo"):
        for i in range(3):
            atomic_write_bytes(out / f"f{i}.json", b"x")
        assert set(read_manifest(out)["files"]) == {"f0.json", "f1.json", "f2.json"}
    assert saves == ["running"] * 4 + ["complete"]


def test_entries_a_killed_run_left_stale_are_not_carried(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MANIFEST_EVERY_S", 3600.0)
    out = tmp_path / "out"
    with out_dir_run(out, "first"):
        atomic_write_bytes(out / "a.json", b"aaaa")
        atomic_write_bytes(out / "keep.json", b"kkkk")
    killed = OutRun(out, "killed").start()
    atomic_write_bytes(out / "a.json", b"bbbb")  # the first write: in the manifest at once
    atomic_write_bytes(out / "a.json", b"cccc")  # same size, not yet in the manifest when the run dies
    _kill(killed)
    left = read_manifest(out)
    assert left["status"] == "running" and check_out_dir(out)[0].startswith("the last run (killed")
    assert left["files"]["a.json"]["sha256"] == hashlib.sha256(b"bbbb").hexdigest()  # stale

    with out_dir_run(out, "next") as run:  # writes nothing itself
        assert run.previous["files"].keys() == {"keep.json"}
    final = read_manifest(out)
    assert final["status"] == "complete" and check_out_dir(out) == []
    assert final["files"]["a.json"] == {"run": None, "bytes": 4, "sha256": None}  # listed, never claimed
    assert final["files"]["keep.json"] == left["files"]["keep.json"]  # untouched since: carried as it was


# ------------------------------------------------------------------------------------ model cache
@pytest.fixture
def fresh_cleaned(monkeypatch):
    monkeypatch.setattr(cache, "_CLEANED", set())
    calls: list[Path] = []
    real = cache.clean_stale_cache

    def counting(root: Path, **kwargs):
        calls.append(root)
        return real(root, **kwargs)

    monkeypatch.setattr(cache, "clean_stale_cache", counting)
    return calls


def _stale_dir(root: Path) -> Path:
    stale = root / "gguf" / ".convert-killed"
    stale.mkdir(parents=True)
    old = time.time() - 2 * cache.STALE_AFTER_S
    os.utime(stale, (old, old))
    return stale


def test_cache_root_cleans_each_root_once_per_process(tmp_path, monkeypatch, fresh_cleaned):
    first, second = tmp_path / "c1", tmp_path / "c2"
    stale1, stale2 = _stale_dir(first), _stale_dir(second)
    monkeypatch.setenv(cache.CACHE_ENV, str(first))
    assert cache.cache_root() == first and not stale1.exists()
    later = _stale_dir(first)  # a later leftover in the same root waits for the next process
    assert cache.cache_root() == first and later.exists() and fresh_cleaned == [first]
    monkeypatch.setenv(cache.CACHE_ENV, str(second))  # another root is still cleaned
    assert cache.cache_root() == second and not stale2.exists() and fresh_cleaned == [first, second]
    young = second / "toy_tokenizer_v1.tmp123"  # a live writer's: kept
    young.mkdir()
    monkeypatch.setattr(cache, "_CLEANED", set())
    cache.cache_root()
    assert young.exists() and fresh_cleaned == [first, second, second]
