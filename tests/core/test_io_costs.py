"""Costs kept bounded without changing what is written: the ``--out`` manifest of a run that writes many files
(not rewritten on every write)."""

from __future__ import annotations

import hashlib

from mi_massive.core import io
from mi_massive.core.io import OutRun, atomic_write_bytes, check_out_dir, out_dir_run, read_manifest


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
