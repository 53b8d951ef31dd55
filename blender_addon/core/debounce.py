"""Debounce for live mode: start a preview only once the map has stopped changing for a moment.

Pure logic, driven by a main-thread timer that passes the current map checksum and the clock; it never
blocks. A stroke in progress changes the checksum every poll, so nothing starts until the user pauses.
"""

from __future__ import annotations


class Debouncer:
    """``observe(key, now)`` is True exactly once per settled key that differs from the last one started."""

    def __init__(self, delay_s: float = 0.6):
        if delay_s < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay_s}")
        self.delay_s = float(delay_s)
        self._key: str | None = None  # latest key seen
        self._since = 0.0  # when it was first seen
        self._started: str | None = None  # key of the last preview started

    def observe(self, key: str, now: float) -> bool:
        if key != self._key:
            self._key, self._since = key, now
            return False
        if key == self._started or now - self._since < self.delay_s:
            return False
        self._started = key
        return True

    def forget(self) -> None:
        """Make the current map eligible again (e.g. after a failed or cancelled preview)."""
        self._started = None

    @property
    def started_key(self) -> str | None:
        return self._started
