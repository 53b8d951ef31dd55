"""Exit codes and the end-of-run handling every command line shares (terrain_core CLI, batch.py, training).

    0    done
    1    an unexpected internal error (a bug: please report it); batch.py: some maps failed
    2    bad input: a bad option, unreadable map or data, bad model file, unusable output path, too large;
         one line on stderr, nothing written
    130  interrupted (Ctrl-C); 143 terminated (SIGTERM): nothing half-written is left
    141  stdout was closed by the reader (``... | head``): stop quietly, as a Unix tool killed by SIGPIPE

Standard library only (the batch script runs inside Blender).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 130, 141, 143


class UsageError(Exception):
    """A bad input, option or path: printed as one line on stderr, exit code 2."""


def one_line(text: object, limit: int = 400) -> str:
    """A message on one line (first line of a multi-line one), at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    s = lines[0] if lines else ""
    return s if len(s) <= limit else s[: limit - 3] + "..."


def silence_stdout() -> int:
    """After a BrokenPipeError on stdout: point it at /dev/null (so the interpreter's final flush does not
    complain) and return the exit code of a tool killed by SIGPIPE."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C so that ``finally`` blocks remove temporary files."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not allowed here (embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_entry(
    body: Callable[[], int],
    *,
    expected: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted",
    err=None,
) -> int:
    """Run a command's body and map its ends to exit codes: ``UsageError``, ``OSError`` (a path that cannot
    be written, a full disk) and the ``expected`` error types give exit 2 and one line ``error: ...``;
    a closed stdout 141 quietly; Ctrl-C 130 and SIGTERM 143 (after ``finally`` blocks cleaned up); any
    other exception is a bug: one line and exit 1 (``TERRAIN_DEBUG=1`` shows the traceback)."""
    err = err or sys.stderr
    try:
        with sigterm_unwinds():
            return body()
    except BrokenPipeError:
        return silence_stdout()
    except (UsageError, OSError, *expected) as e:
        print(f"error: {one_line(e)}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=err)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"terminated; {interrupted}", file=err)
        return EXIT_TERMINATED
    except Exception as e:
        if os.environ.get("TERRAIN_DEBUG"):
            raise
        print(
            f"internal error: {type(e).__name__}: {one_line(e)} "
            "(set TERRAIN_DEBUG=1 for the traceback; please report it)",
            file=err,
        )
        return EXIT_INTERNAL
