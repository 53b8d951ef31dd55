"""A background job: one worker thread, a cancel event, a progress fraction, a result or an error.

The worker runs plain Python/numpy (the generator) and never touches Blender data; the main thread polls
``done`` from a modal operator's timer (or ``bpy.app.timers``) and takes ``result``/``error`` from there.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any


class Job:
    """Run ``fn(progress, cancel)`` in a daemon thread. ``progress(fraction)`` may be called from it."""

    def __init__(self, fn: Callable[[Callable[[float], None], threading.Event], Any], name: str = "job"):
        self._fn = fn
        self.name = name
        self.cancel_event = threading.Event()
        self._lock = threading.Lock()
        self._progress = 0.0
        self._result: Any = None
        self._error: BaseException | None = None
        self._traceback = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"terrain-{name}", daemon=True)
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def start(self) -> Job:
        self.started_at = time.perf_counter()
        self._thread.start()
        return self

    def _set_progress(self, fraction: float) -> None:
        with self._lock:
            self._progress = min(max(float(fraction), 0.0), 1.0)

    def _run(self) -> None:
        try:
            result = self._fn(self._set_progress, self.cancel_event)
            with self._lock:
                self._result = result
        except BaseException as e:  # handed to the main thread, which reports it; never lost
            with self._lock:
                self._error = e
                self._traceback = traceback.format_exc()
        finally:
            self.finished_at = time.perf_counter()
            self._done.set()

    # -------------------------------------------------------------------- polled from the main thread
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def progress(self) -> float:
        with self._lock:
            return self._progress

    @property
    def result(self) -> Any:
        with self._lock:
            return self._result

    @property
    def error(self) -> BaseException | None:
        with self._lock:
            return self._error

    @property
    def traceback(self) -> str:
        with self._lock:
            return self._traceback

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (True) or ``timeout`` passed (False)."""
        return self._done.wait(timeout)


def run_sync(fn: Callable[[Callable[[float], None], threading.Event], Any]) -> Any:
    """Run a job function on the calling thread (background mode / ``execute``), same signature."""
    return fn(lambda _f: None, threading.Event())
