"""Minimal PNG writer in numpy + zlib (Blender's Python has no Pillow): 8-bit grey/RGB/RGBA, 16-bit grey.

Exact by construction (no colour management on the way, unlike saving through a Blender image), atomic
(temp file + rename), used for height.png (16-bit), texture/terrain/splat PNGs and the contact sheet.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from terrain_core.output_set import write_bytes_atomic

_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(img: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of [H, W] or [H, W, C] (C 1-4) uint8, or [H, W] uint16. Row 0 is the top of the image."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in _COLOR_TYPE or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected [H, W] or [H, W, 1..4], got shape {np.asarray(img).shape}")
    if a.dtype == np.uint8:
        depth = 8
    elif a.dtype == np.uint16:
        depth = 16
        a = a.astype(">u2")  # PNG samples are big-endian
    else:
        raise ValueError(f"expected uint8 or uint16 pixels, got {a.dtype}")
    h, w, c = a.shape
    rows = np.ascontiguousarray(a).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPE[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, img: np.ndarray, level: int = 6) -> Path:
    """Write a PNG atomically (``terrain_core.output_set.write_bytes_atomic``)."""
    return write_bytes_atomic(path, encode_png(img, level))
