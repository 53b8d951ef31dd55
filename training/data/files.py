"""Reading and writing PNGs, and reading JSON, for the public layout; errors name the file (no torch)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core.output_set import atomic_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (IHDR byte 9).
GRAY, RGB, PALETTE_T, GRAY_ALPHA, RGBA = 0, 2, 3, 4, 6


DATA_MAX_SIDE = 1 << 16  # dataset images are crops; anything larger is not one of ours


class DataFileError(ValueError):
    """A data file is missing, unreadable or of the wrong kind; the message names it and says what to do."""


class DatasetError(DataFileError):
    """The folder cannot be used as a training set; the message names the file and the fix."""


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int


def read_png_header(path: Path, error: type[Exception] = DataFileError) -> PngHeader:
    """Size, bit depth and colour type from the IHDR chunk (26 bytes read; no decoding)."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    # Pillow hides the bit depth of 16-bit grayscale on some versions (mode "I"), so read it ourselves.
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise error(f"{path} is not a PNG file (bad signature or header); re-export it as PNG")
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    if w == 0 or h == 0:
        raise error(f"{path} is an empty image ({w}x{h})")
    return PngHeader(w, h, depth, ctype)


def read_image(path: Path, error: type[Exception] = DataFileError) -> np.ndarray:
    """Decode an image fully and strictly (``terrain_core.imageio.open_image``: a truncated or corrupt
    file, or a PNG whose data stops early, raises ``error`` naming it)."""
    from terrain_core.imageio import MapReadError, open_image

    try:
        with open_image(path, min_side=1, max_side=DATA_MAX_SIDE) as im:
            arr = np.asarray(im)
    except MapReadError as e:
        detail = str(e).removeprefix(f"{path}: ").split("; ")[0]
        raise error(f"{path} is corrupt or unreadable ({detail}); re-create or remove it") from None
    return arr


def read_json(path: Path, error: type[Exception] = DataFileError, *, kind: str = "", hint: str = "") -> Any:
    """The JSON value in ``path``; ``error`` naming the file when it cannot be read or parsed. ``kind``:
    what the file is, for the messages ("cluster override file"); ``hint``: appended to the parse error
    (what the file should hold)."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise error(f"cannot read {kind + ' ' if kind else ''}{path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}){hint}") from None


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path`` (``terrain_core.output_set.atomic_file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        write(tmp)
    return path


def save_png(path: Path, arr: np.ndarray) -> Path:
    """uint8 RGB/gray or uint16 gray array -> PNG, atomically."""
    from PIL import Image

    a = np.ascontiguousarray(arr)
    if a.dtype == np.uint16 and a.ndim != 2:
        raise ValueError("16-bit PNGs are written as single-channel [H, W] only")
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"save_png needs uint8 or uint16, got {a.dtype}")
    img = Image.fromarray(a)
    return atomic_write(Path(path), lambda p: img.save(p, format="PNG", compress_level=4))
