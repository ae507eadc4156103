"""The one atomic-write helper, atomic folders, the fault hook and the run lock."""

import os
import subprocess
import sys

import numpy as np
import pytest

from curate import workspace
from curate.errors import RunLocked, UsageError


def test_atomic_write_replaces_and_returns_digest(tmp_path):
    target = tmp_path / "a" / "x.txt"
    d1 = workspace.write_text(target, "one")
    d2 = workspace.write_text(target, "two")
    assert target.read_text() == "two" and d1 != d2 and d2 == workspace.file_sha256(target)
    assert [p.name for p in target.parent.iterdir()] == ["x.txt"]  # no temp files left


def test_a_crash_at_the_commit_keeps_old_content(tmp_path, write_faults):
    target = tmp_path / "x.npy"
    workspace.write_npy(target, np.arange(3))
    write_faults.reset(1)
    with pytest.raises(write_faults.Crash):
        workspace.write_npy(target, np.arange(5))
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_atomic_dir_is_all_or_nothing(tmp_path):
    target = tmp_path / "table"
    with workspace.atomic_dir(target) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(RuntimeError):
        with workspace.atomic_dir(target) as tmp:
            (tmp / "f").write_text("v2")
            raise RuntimeError("crash")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_inside_refuses_escape(tmp_path):
    assert workspace.inside(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()
    with pytest.raises(UsageError, match="outside the run directory"):
        workspace.inside(tmp_path, "../evil")


def test_lock_names_holder_pid(tmp_path):
    code = ("import sys,time; from curate import workspace\n"
            "with workspace.run_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            with workspace.run_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    with workspace.run_lock(tmp_path):  # the kernel released the dead holder's lock
        pass
    assert os.path.exists(tmp_path / ".lock")


def test_a_crash_while_committing_a_folder_keeps_the_previous_folder(tmp_path, write_faults):
    target = tmp_path / "table"
    with workspace.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    write_faults.reset(1)
    with pytest.raises(write_faults.Crash):
        with workspace.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_a_rerun_removes_temporary_files_a_killed_write_left(tmp_path):
    """kill -9 between mkstemp and the rename leaves ``.name.XXXXXXXX.tmp.ext``; the next run under the lock
    deletes such files and nothing else."""
    step = tmp_path / "compare"
    step.mkdir()
    left = [step / ".compare.w28ok9po.tmp.png", step / "sub" / ".table.abcd_123.tmp"]
    kept = [step / "compare.png", step / ".hidden", step / "notes.tmp.txt", step / ".x.short.tmp"]
    for path in left + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert sorted(workspace.remove_stale_writes(tmp_path)) == sorted(left)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in left)
