"""Broken image files for the reader tests: PNGs whose data stops early, huge headers without pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png_bytes(rgb: np.ndarray, *, rows: int | None = None, header_hw: tuple[int, int] | None = None) -> bytes:
    """An RGB PNG of ``rgb`` [H, W, 3] uint8 whose header may claim another size and whose compressed data
    may hold only the first ``rows`` rows (a complete, valid zlib stream that simply ends early)."""
    h, w = rgb.shape[:2]
    hh, hw = header_hw or (h, w)
    keep = rgb[: h if rows is None else rows]
    raw = np.concatenate([np.zeros((keep.shape[0], 1), np.uint8), keep.reshape(keep.shape[0], w * 3)], 1)
    ihdr = struct.pack(">IIBBBBB", hw, hh, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes()))
        + _chunk(b"IEND", b"")
    )


def short_png(path: Path, colour, width: int, height: int, rows: int) -> Path:
    """A ``width`` x ``height`` PNG in one colour whose data holds only ``rows`` rows."""
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = colour
    path.write_bytes(png_bytes(rgb, rows=rows))
    return path


def huge_header_png(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes claiming a ``width`` x ``height`` image (its data is one row)."""
    path.write_bytes(png_bytes(np.zeros((1, 8, 3), np.uint8), header_hw=(height, width)))
    return path
