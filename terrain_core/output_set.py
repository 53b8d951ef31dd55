"""The one way this project writes its outputs: a set of files all at once, or a single file, atomically.

``OutputSet(folder)`` is used by every command that writes a folder of results (the CLI, the batch script,
the add-on's export):

- Entering it checks the folder (an existing file there, or a parent that cannot be written, raises
  ``OutputPathError`` before any work), creates it, and takes its lock file (``.terrain-output.lock``:
  PID, host, time). A second run into the same folder waits up to ``wait_s`` seconds, then fails with
  ``OutputBusyError`` naming the other run. A lock whose process is gone (or whose PID now belongs to a
  younger process) is stale and taken over.
- Holding the lock, it removes the staging folders of earlier runs that died (SIGKILL, power loss),
  first undoing a commit that was cut short (see below), so no temporary folder outlives the next run.
- Files are written into ``set.path(name)``: a hidden staging folder *inside* the target (same file system
  even when the target is a mount point; nothing is ever written into a parent the user did not name).
- ``commit()`` moves every entry of the staging folder into place: each existing file of the same name is
  first renamed into a backup folder, then the new one renamed in. If any rename fails, everything done so
  far is undone and the previous files are back, byte for byte. A journal written before the first rename
  lets the next run undo a commit that a kill interrupted, so a folder never keeps a mix of two runs.
- Leaving the block without a commit (an error, Ctrl-C) removes the staging folder, the lock, and the
  target folder itself if this run created it and it is empty.

``atomic_file(path)`` / ``write_bytes_atomic`` / ``write_text_atomic`` write one file through a temporary
name beside it and a rename. Both give files the same permissions: ``0o666`` less the process umask
(``file_mode()``), the mode a plain ``open()`` would give; the umask is read once, never changed later.

Standard library only: the add-on uses this inside Blender.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".terrain-output.lock"
STAGING_PREFIX = ".terrain-partial-"
JOURNAL_NAME = "journal.json"
BACKUP_NAME = ".previous"
NEW_NAME = "new"


class OutputPathError(OSError):
    """The output path cannot be used (a file where a folder should be, no permission, ...): bad input."""


class OutputBusyError(OutputPathError):
    """Another live run holds the output folder's lock."""


def _read_umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere: the only way is to set and restore it, which is why this happens once, at import (the
    # main thread imports this module), and never from a worker thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def file_mode() -> int:
    """Permission bits of every file this project writes: what ``open()`` gives under the process umask."""
    return 0o666 & ~_UMASK


# ----------------------------------------------------------------------------------------- one file


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it over ``path``.

    The caller writes the temporary file (by name: any library's ``save(path)`` works). On an error the
    temporary file is removed and ``path`` is untouched. ``fsync``: flush the file and the rename to disk
    (checkpoints: a power cut must not leave an empty file under the final name).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(errno.ENOENT, "the writer did not create the file", str(tmp))
        os.chmod(tmp, file_mode())
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_file(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------------------- checks


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise ``OutputPathError`` unless ``path`` is, or can be created as, a folder we can write in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{what} {p} exists and is not a folder; choose a folder path")
    probe = p.absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        if probe.parent.exists() and not probe.parent.is_dir():
            raise OutputPathError(f"{what} {p}: {probe.parent} is a file, not a folder")
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{what} {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {p}: no permission to write in {probe}")
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Raise ``OutputPathError`` unless a file can be written at ``path`` (its folder made if missing)."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{what} {p} is a folder; give a file path")
    if p.parent.exists() and not p.parent.is_dir():
        raise OutputPathError(f"{what} {p}: {p.parent} is a file, not a folder")
    check_output_dir(p.parent, what=f"{what} {p}: folder")
    return p


# ----------------------------------------------------------------------------------------- lock


def _process_start_time(pid: int) -> float | None:
    """Unix time a process started (Linux /proc), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return True  # no cheap, safe probe here: a Windows lock is judged by its age only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


STALE_AGE_S = 7 * 24 * 3600.0  # a lock whose process cannot be checked counts as dead after this long


def _lock_is_stale(info: dict) -> bool:
    pid, host, started = info.get("pid"), info.get("host"), info.get("time")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return True  # unreadable: a run killed while writing the lock file
    if host != socket.gethostname():
        return time.time() - started > STALE_AGE_S  # another machine on a shared disk: trust its lock
    if pid == os.getpid():
        return False
    if not _pid_alive(pid):
        return True
    born = _process_start_time(pid)
    # The PID was reused by a process younger than the lock: the lock's own process is gone.
    return born is not None and born > started + 2.0


class OutputLock:
    """A lock file in ``folder``: one run at a time writes there. Re-entrant within one process."""

    def __init__(self, folder: str | os.PathLike, *, wait_s: float = 0.0):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.wait_s = float(wait_s)
        self._token: str | None = None

    def _try_create(self) -> bool:
        token = uuid.uuid4().hex
        info = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "id": token}
        data = json.dumps(info)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(data)
        self._token = token
        return True

    def _read(self) -> dict | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            info = json.loads(text)
        except ValueError:
            # Being written right now, or a run killed mid-write: judge by the file's age.
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return None
            return {} if age > 10.0 else {"pid": -1, "host": "", "time": time.time(), "partial": True}
        return info if isinstance(info, dict) else {}

    def _break_stale(self, info: dict) -> None:
        """Remove a stale lock, unless another run replaced it meanwhile."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            now = json.loads(aside.read_text())
        except (OSError, ValueError):
            now = {}
        if info and now != info:  # not the lock we judged: put it back (if nobody took the name since)
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def acquire(self) -> OutputLock:
        deadline = time.monotonic() + self.wait_s
        while True:
            if self._try_create():
                return self
            info = self._read()
            if info is None:
                continue  # released just now: try again
            if not info.get("partial") and _lock_is_stale(info):
                self._break_stale(info)
                continue
            if time.monotonic() >= deadline:
                who = f"process {info.get('pid')}" + (
                    f" on {info['host']}" if info.get("host") not in (None, socket.gethostname()) else ""
                )
                since = time.strftime("%H:%M:%S", time.localtime(info.get("time", time.time())))
                raise OutputBusyError(
                    f"{self.folder} is in use by another run ({who}, since {since}); wait for it to finish "
                    f"or choose another folder (if no such run exists, delete {self.path})"
                )
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        if self._token is None:
            return
        try:
            info = json.loads(self.path.read_text())
            if info.get("id") == self._token:
                self.path.unlink()
        except (OSError, ValueError):
            pass
        self._token = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------- the set


def _recover(folder: Path, staging: Path) -> None:
    """Undo the interrupted commit recorded in ``staging`` (if any), then remove ``staging``."""
    journal = staging / JOURNAL_NAME
    try:
        entries = json.loads(journal.read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        entries = None  # no commit started (or the journal never completed): nothing in place to undo
    if entries:
        backup, new = staging / BACKUP_NAME, staging / NEW_NAME
        for name, had_previous in entries:
            dst = folder / name
            if had_previous:
                if (backup / name).exists() or (backup / name).is_symlink():
                    _remove(dst)
                    os.rename(backup / name, dst)
            elif not (new / name).exists() and (dst.exists() or dst.is_symlink()):
                _remove(dst)  # the new file reached its place; there was none before
    shutil.rmtree(staging, ignore_errors=True)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove staging folders of dead runs in ``folder`` (call with the folder's lock held)."""
    folder = Path(folder)
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
                _recover(folder, entry)
                removed.append(entry)
            elif entry.name.startswith(f"{LOCK_NAME}.stale-"):
                entry.unlink(missing_ok=True)
    return removed


class OutputSet:
    """A set of output files committed into ``folder`` all at once (module docstring). Use as::

    with OutputSet(out_dir) as out:
        write_png(out.path("texture.png"), ...)
        ...
        out.commit()          # nothing appears in out_dir before this; all of it after
    """

    def __init__(self, folder: str | os.PathLike, *, wait_s: float = 0.0, what: str = "output folder"):
        self.folder = Path(folder)
        self.what = what
        self.wait_s = wait_s
        self.staging: Path | None = None
        self.committed: dict[str, Path] = {}
        self._lock: OutputLock | None = None
        self._created: list[Path] = []

    # -- lifecycle

    def open(self) -> OutputSet:
        check_output_dir(self.folder, self.what)
        p = self.folder.absolute()
        missing = []
        while not p.exists() and p.parent != p:
            missing.append(p)
            p = p.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputPathError(f"{self.what} {self.folder}: cannot be created ({e.strerror or e})") from e
        self._created = missing  # deepest first; removed again if this run writes nothing
        try:
            self._lock = OutputLock(self.folder, wait_s=self.wait_s).acquire()
            clean_stale(self.folder)
            self.staging = self.folder / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            (self.staging / NEW_NAME).mkdir(parents=True)
        except OSError as e:
            self.close()
            if isinstance(e, OutputPathError):
                raise
            raise OutputPathError(f"{self.what} {self.folder}: cannot write there ({e.strerror or e})") from e
        return self

    def close(self) -> None:
        """Remove the staging folder and the lock (and the folder if this run made it and it is empty)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if not self.committed:
            for d in self._created:
                with contextlib.suppress(OSError):
                    d.rmdir()
        self._created = []

    def __enter__(self) -> OutputSet:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing

    @property
    def dir(self) -> Path:
        """The staging folder: write the set's files here (or through ``path(name)``)."""
        if self.staging is None:
            raise RuntimeError("OutputSet is not open")
        return self.staging / NEW_NAME

    def path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"output names are plain file names, got {name!r}")
        return self.dir / name

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir())

    def commit(self) -> dict[str, Path]:
        """Move every staged entry into the folder; all or none, the previous files restored on failure."""
        staging, new = self.staging, self.dir
        names = self.names()
        for name in names:
            dst = self.folder / name
            if dst.exists() and dst.is_dir() != (new / name).is_dir():
                kind = "a folder" if dst.is_dir() else "a file"
                raise OutputPathError(f"{dst} is {kind} in the way; remove it or choose another folder")
        steps: list[list] = []  # [name, had_previous, placed] per entry, in commit order
        try:
            mode = file_mode()
            for name in names:
                if (new / name).is_file():
                    os.chmod(new / name, mode)
            (staging / BACKUP_NAME).mkdir()
            entries = [[n, (self.folder / n).exists() or (self.folder / n).is_symlink()] for n in names]
            write_text_atomic(staging / JOURNAL_NAME, json.dumps({"entries": entries}))
            for name, had_previous in entries:
                dst = self.folder / name
                steps.append([name, had_previous, False])
                if had_previous:
                    os.rename(dst, staging / BACKUP_NAME / name)
                os.rename(new / name, dst)
                steps[-1][2] = True
            # The commit point: without a journal, a later run only deletes the staging folder.
            (staging / JOURNAL_NAME).unlink()
        except BaseException as e:
            self._rollback(steps)
            if isinstance(e, OSError) and not isinstance(e, OutputPathError):
                raise OutputPathError(
                    f"writing into {self.folder} failed ({e.strerror or e}); the previous files are kept"
                ) from e
            raise
        self.committed = {n: self.folder / n for n in names}
        shutil.rmtree(staging, ignore_errors=True)
        self.staging = None
        return dict(self.committed)

    def _rollback(self, steps: list[list]) -> None:
        """Undo the renames of a failed commit, last first; the previous files return to their names."""
        backup = self.staging / BACKUP_NAME
        failed = False
        for name, had_previous, placed in reversed(steps):
            dst = self.folder / name
            try:
                if placed:
                    os.rename(dst, self.dir / name)
                if had_previous and (backup / name).exists():
                    os.rename(backup / name, dst)
            except OSError:
                failed = True
        if failed:
            # Keep the journal and the staging folder: the next run's recovery finishes the undo.
            self.staging = None
        else:
            with contextlib.suppress(OSError):
                (self.staging / JOURNAL_NAME).unlink()
