"""The one output writer (terrain_core.output_set): all files or none, earlier output kept byte for byte,
stale staging folders of killed runs removed, one run at a time per folder."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from terrain_core import output_set
from terrain_core.output_set import (
    LOCK_NAME,
    STAGING_PREFIX,
    OutputBusyError,
    OutputPathError,
    OutputSet,
    atomic_file,
    write_text_atomic,
)

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("a.png", "b.tif", "c.obj", "meta.json")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_set(folder: Path, tag: str, names=NAMES) -> dict[str, Path]:
    with OutputSet(folder) as out:
        for n in names:
            out.path(n).write_text(f"{tag}:{n}\n" * 50)
        return out.commit()


def test_commit_writes_all_files_and_leaves_no_helpers(tmp_path):
    out = tmp_path / "new" / "deeper"
    files = write_set(out, "one")
    assert sorted(files) == sorted(NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no lock, no staging folder left
    mode = stat.S_IMODE((out / "a.png").stat().st_mode)
    assert mode == output_set.file_mode()
    # A second set replaces files of the same names and keeps the others.
    write_set(out, "two", names=("a.png", "extra.txt"))
    assert (out / "a.png").read_text().startswith("two:") and (out / "b.tif").read_text().startswith("one:")
    assert (out / "extra.txt").exists()


def test_nothing_appears_before_commit_and_a_failed_run_removes_what_it_created(tmp_path):
    out = tmp_path / "made" / "here"
    with pytest.raises(RuntimeError):
        with OutputSet(out) as s:
            s.path("a.png").write_text("x")
            assert not (out / "a.png").exists()
            raise RuntimeError("generation failed")
    assert not (tmp_path / "made").exists()  # the folders this run created are gone again


def failing_rename(monkeypatch, error_for) -> dict:
    """Make output_set's ``os.rename`` raise ``error_for(src, dst, n)`` (n: 1 for the first rename) where
    that is not None; returns the call counter ({"n": ...})."""
    calls = {"n": 0}
    real_rename = os.rename

    def rename(src, dst):
        calls["n"] += 1
        error = error_for(Path(src), Path(dst), calls["n"])
        if error is not None:
            raise error
        return real_rename(src, dst)

    monkeypatch.setattr(output_set.os, "rename", rename)
    return calls


@pytest.mark.parametrize("fail_at", range(9))
def test_each_failing_rename_of_the_commit_leaves_the_earlier_output_byte_identical(
    tmp_path, monkeypatch, fail_at
):
    out = tmp_path / "out"
    write_set(out, "old")
    (out / "keep.txt").write_text("not ours")
    before = snapshot(out)
    calls = failing_rename(
        monkeypatch, lambda src, dst, n: OSError(28, "No space left on device") if n == fail_at + 1 else None
    )
    # Four files with earlier versions (2 renames each: old one aside, new one in) and one new (1 rename):
    # nine renames, each made to fail in turn.
    with pytest.raises(OutputPathError, match="previous files are kept"):
        write_set(out, "new", names=(*NAMES, "new.txt"))
    assert calls["n"] > fail_at  # the commit reached the failing rename
    assert snapshot(out) == before


def test_a_failing_replace_of_one_file_is_undone_for_all(tmp_path, monkeypatch):
    # As in the report: an immutable (or foreign-owned) meta.json, which cannot be moved aside.
    out = tmp_path / "out"
    write_set(out, "old")
    before = snapshot(out)
    refused = PermissionError(1, "Operation not permitted")
    failing_rename(monkeypatch, lambda src, dst, n: refused if src == out / "meta.json" else None)
    with pytest.raises(OutputPathError):
        write_set(out, "new")
    assert snapshot(out) == before


def test_a_rollback_that_itself_fails_is_finished_by_the_next_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_set(out, "old")
    before = snapshot(out)
    # the 4th rename (2nd file into place) and every undo after it fail
    failing_rename(monkeypatch, lambda src, dst, n: OSError(5, "Input/output error") if n >= 4 else None)
    with pytest.raises(OutputPathError):
        write_set(out, "new")
    monkeypatch.undo()
    assert any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())  # the journal is left for recovery
    with OutputSet(out):  # the next run recovers, then writes nothing
        pass
    assert snapshot(out) == before


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from terrain_core.output_set import OutputSet
    out, tag, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])
    real = os.rename
    def slow_rename(a, b):
        time.sleep(slow)
        return real(a, b)
    os.rename = slow_rename
    with OutputSet(out) as s:
        for i in range(6):
            s.path(f"f{i}.bin").write_bytes((tag * 1000).encode() * 30)
            time.sleep(slow)
        print("committing", flush=True)
        s.commit()
    """
)


def old_set_and_writer(tmp_path):
    """KILL_SCRIPT's first set ("old") written into tmp_path/out; returns (out, the set's snapshot, the
    command that writes another set: writer(tag, seconds per file), the environment it needs)."""
    out = tmp_path / "out"
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def writer(tag: str, slow: float) -> list[str]:
        return [sys.executable, str(script), str(out), tag, str(slow)]

    subprocess.run(writer("old", 0), check=True, env=env)
    return out, snapshot(out), writer, env


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_random_points_then_a_clean_run(tmp_path, seed):
    out, before, writer, env = old_set_and_writer(tmp_path)
    delay = random.Random(seed).uniform(0.05, 0.9)
    proc = subprocess.Popen(writer("new", 0.04), env=env)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    now = snapshot(out)
    visible = {k: v for k, v in now.items() if not k.startswith(".")}
    # Visible files: all old, or (the commit finished) all new; never a mix once the next run recovered.
    subprocess.run(writer("fresh", 0), check=True, env=env)
    after = sorted(p.name for p in out.iterdir())
    assert after == sorted(k for k in before)  # no staging folder, no lock left
    assert all(v.startswith(b"fresh") for v in snapshot(out).values())
    assert visible  # the earlier files were never all gone at the moment of the kill


def test_recovery_after_a_kill_mid_commit_restores_the_old_set(tmp_path):
    out, before, writer, env = old_set_and_writer(tmp_path)
    proc = subprocess.Popen(writer("new", 0.15), env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "committing"
    time.sleep(0.15 * 3.5)  # inside the commit: some files renamed away, some new ones in place
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mixed = {k: v for k, v in snapshot(out).items() if not k.startswith(".")}
    assert mixed != before  # the kill did land inside the commit
    with OutputSet(out):  # a later run undoes the cut-short commit
        pass
    assert snapshot(out) == before


def test_lock_fails_clearly_then_serialises_with_waiting(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "from terrain_core.output_set import OutputLock\nimport sys, time\n"
         f"l = OutputLock({str(out)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(1.5)\nl.release()"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputBusyError, match=rf"in use by another run \(process {holder.pid}"):
        OutputSet(out).open()
    assert not (out / "x.txt").exists()
    t0 = time.monotonic()
    with OutputSet(out, wait_s=30) as s:  # waits for the holder, then writes
        waited = time.monotonic() - t0
        s.path("x.txt").write_text("after")
        s.commit()
    holder.wait()
    assert waited > 0.3 and (out / "x.txt").read_text() == "after"


def test_concurrent_writers_serialise_on_the_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = textwrap.dedent(
        """
        import sys, time
        from terrain_core.output_set import OutputSet
        tag = sys.argv[1]
        with OutputSet(sys.argv[2], wait_s=30) as s:
            for n in ("a", "b", "c"):
                s.path(n).write_text(tag)
                time.sleep(0.1)
            s.commit()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, f"run{i}", str(out)], env=env) for i in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    texts = {(out / n).read_text() for n in "abc"}
    assert len(texts) == 1  # one run's set, never a mix
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": os.uname().nodename, "time": time.time() - 5, "id": "x"})
    )
    (out / f"{STAGING_PREFIX}{dead.pid}-deadbeef" / "new").mkdir(parents=True)
    (out / f"{STAGING_PREFIX}{dead.pid}-deadbeef" / "new" / "big.bin").write_bytes(b"0" * 1000)
    write_set(out, "ok", names=("x.txt",))
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]


def test_a_lock_held_by_a_live_process_started_after_it_is_stale(tmp_path):
    # PID reuse: the PID in the lock now belongs to a younger process (this one), so the lock is stale.
    info = {"pid": os.getppid(), "host": os.uname().nodename, "time": time.time()}
    assert not output_set._lock_is_stale(info)  # our parent started before now: a live holder
    info["time"] = 1000.0  # a lock from 1970: its process cannot be the one now using that PID
    assert output_set._lock_is_stale(info)


def test_output_path_checks(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputPathError, match="exists and is not a folder"):
        OutputSet(f).open()
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        OutputSet(f / "sub").open()
    assert f.read_text() == "x"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(OutputPathError, match="no permission"):
            OutputSet(ro / "out").open()
    finally:
        ro.chmod(0o755)


def test_a_file_in_the_way_of_a_folder_entry_is_refused_before_anything_moves(tmp_path):
    out = tmp_path / "out"
    write_set(out, "old")
    (out / "sub").mkdir()
    before = snapshot(out)
    with pytest.raises(OutputPathError, match="a folder in the way"):
        with OutputSet(out) as s:
            s.path("a.png").write_text("new")
            s.path("sub").write_text("a file where a folder is")
            s.commit()
    assert snapshot(out) == before


def test_atomic_file_keeps_the_old_file_on_error_and_uses_the_one_mode(tmp_path):
    p = tmp_path / "x.json"
    write_text_atomic(p, "old")
    with pytest.raises(ValueError):
        with atomic_file(p) as tmp:
            tmp.write_text("half")
            raise ValueError("writer failed")
    assert p.read_text() == "old" and sorted(q.name for q in tmp_path.iterdir()) == ["x.json"]
    with atomic_file(p, fsync=True) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as mkstemp or safetensors would
        os.write(fd, b"new")
        os.close(fd)
    assert p.read_text() == "new" and stat.S_IMODE(p.stat().st_mode) == output_set.file_mode()


def test_no_module_changes_the_umask_outside_output_set():
    # One permission rule: only output_set reads the umask (once, at import); no helper toggles it.
    hits = []
    for folder in ("terrain_core", "training", "blender_addon"):
        for p in (ROOT / folder).rglob("*.py"):
            if p.name != "output_set.py" and "os.umask(" in p.read_text():
                hits.append(str(p.relative_to(ROOT)))
    assert hits == []
