"""argparse value types shared by the command lines (``terrain_core.cli`` and the add-on's ``batch.py``).

Each returns a parser that raises ``argparse.ArgumentTypeError`` with a message naming the option, so
the command line prints one line (the option, what it must be, what it got) and exits with status 2.
Standard library only: the extension's core wheel carries this module.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_in(what: str, lo: int, hi: int | None = None, *, zero_ok: bool = False) -> Callable[[str], int]:
    """An integer in ``lo..hi`` (``hi`` None: at least ``lo``); ``zero_ok`` also lets 0 through (an "off"
    or "automatic" value below ``lo``)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if zero_ok and v == 0:
            return v
        if hi is None and v < lo:
            extra = " (or 0)" if zero_ok else ""
            raise argparse.ArgumentTypeError(f"{what} must be at least {lo}{extra}, got {v}")
        if hi is not None and not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in {lo}..{hi}, got {v}")
        return v

    return parse


def positive_float(what: str) -> Callable[[str], float]:
    """A finite number above 0."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{what} must be a positive number, got {text!r}")
        return v

    return parse
