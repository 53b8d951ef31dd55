"""Reading class maps and images from files, with errors that say what is wrong and what to do.

numpy only at import; Pillow is imported when a file is read (Blender's Python has no Pillow: the add-on
reads its painted image through bpy and calls ``labels_from_rgb`` itself).

What ``read_label_map`` accepts
- Colour images (RGB, RGBA, palette 'P', CMYK, ...) painted with the 7 class colours: each pixel takes the
  nearest palette colour; an image whose colours are far from all of them is refused. Alpha is ignored.
- Grayscale images (8 or 16 bit, with or without alpha) whose values are all 0..6: read as class ids
  directly (a map saved by another tool as ids). Other grayscale images are treated as grey colours and go
  through the palette match like colour images (so a mid-grey image reads as "mountains", while a photo
  is refused).
- Sizes from ``MIN_SIDE`` to ``MAX_SIDE`` pixels per side.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from terrain_core.labels import (
    DEFAULT_MAX_MEAN_DISTANCE,
    NUM_CLASSES,
    LabelMapError,
    labels_from_rgb,
)

MIN_SIDE = 8  # smaller maps carry no terrain worth generating (and 1x1 is usually a broken export)
MAX_SIDE = 16384  # as terrain_core.runtime.MAX_SIDE: larger maps need > 7.5 GB for the outputs alone
IMAGE_HINT = "save it as PNG (or another format Pillow reads: BMP, TIFF, JPEG, WebP, GIF)"


class MapReadError(LabelMapError):
    """A file cannot be read as a class map or image; the message names the file, the problem and a fix."""


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise MapReadError("reading image files needs Pillow (pip install pillow)") from e
    return Image


@contextlib.contextmanager
def _allow_pixels(n: int):
    """Let Pillow open images up to ``n`` pixels; its own guard (~179 M) is below our MAX_SIDE**2."""
    Image = _pil()
    old = Image.MAX_IMAGE_PIXELS
    if old is not None and n > old:
        Image.MAX_IMAGE_PIXELS = n
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def open_image(path: str | os.PathLike, *, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE):
    """A decoded Pillow image (first frame), after checking the file and the size. Raises MapReadError."""
    Image = _pil()
    from PIL import UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise MapReadError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise MapReadError(f"{p}: is a folder, not an image file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise MapReadError(f"{p}: cannot be read ({e.strerror or e})") from e
    if size == 0:
        raise MapReadError(f"{p}: the file is empty (0 bytes); {IMAGE_HINT}")
    try:
        with _allow_pixels(max_side * max_side):
            im = Image.open(p)
    except UnidentifiedImageError:
        raise MapReadError(f"{p}: not an image file Pillow can read; {IMAGE_HINT}") from None
    except Image.DecompressionBombError:
        raise MapReadError(f"{p}: the image is larger than {max_side}x{max_side} pixels") from None
    except OSError as e:
        raise MapReadError(f"{p}: cannot be read ({e.strerror or e})") from e
    try:
        w, h = im.size
        if w == 0 or h == 0:
            raise MapReadError(f"{p}: the image is empty ({w}x{h} pixels)")
        if w < min_side or h < min_side:
            raise MapReadError(
                f"{p}: the image is too small ({w}x{h} pixels); a map needs at least {min_side}x{min_side}"
            )
        if w > max_side or h > max_side:
            raise MapReadError(
                f"{p}: the image is too large ({w}x{h} pixels); at most {max_side} pixels per side are "
                "supported: scale it down (or split it into parts)"
            )
        try:
            with _allow_pixels(max_side * max_side):
                im.load()
        except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data, bad headers
            raise MapReadError(
                f"{p}: the image data is corrupt or truncated ({e}); re-save the file"
            ) from None
        except MemoryError:
            raise MapReadError(f"{p}: not enough memory to decode a {w}x{h} image") from None
    except BaseException:
        im.close()
        raise
    return im


def _gray_values(im) -> np.ndarray:
    """[H, W] numbers of a one-channel image (8/16/32-bit int or float), alpha dropped."""
    if im.mode in ("LA", "La", "1"):
        im = im.convert("L")
    a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., 0]
    return a


def _gray_to_rgb8(a: np.ndarray) -> np.ndarray:
    """A grayscale array as 8-bit grey RGB [H, W, 3], whatever its bit depth."""
    if a.dtype == np.uint8:
        g = a
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if f.max(initial=0.0) <= 1.0 else 1.0  # 0..1 floats, else already 0..255-ish
        g = np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)
    else:  # 16/32-bit integers: 16-bit range to 8 bits
        g = np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def read_label_map(
    path: str | os.PathLike,
    *,
    min_side: int = MIN_SIDE,
    max_side: int = MAX_SIDE,
    max_mean_distance: float | None = DEFAULT_MAX_MEAN_DISTANCE,
) -> np.ndarray:
    """Class ids [H, W] uint8 (0..6) from a painted map file. Raises ``MapReadError`` (a LabelMapError).

    Accepted images: see the module docstring. Errors name the file and the problem: missing, a folder,
    empty, not an image, corrupt, too small or too large, colours far from every class.
    """
    p = Path(path)
    with open_image(p, min_side=min_side, max_side=max_side) as im:
        mode = im.mode
        if mode in ("L", "LA", "La", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            a = _gray_values(im)
            if np.issubdtype(a.dtype, np.floating):
                ids = bool(np.isfinite(a).all()) and bool((a == np.rint(a)).all())
            else:
                ids = True
            if ids and a.min() >= 0 and a.max() < NUM_CLASSES:
                return a.astype(np.uint8)  # a class-id map: values are the ids themselves
            rgb = _gray_to_rgb8(a)
        else:
            if mode not in ("RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB")
            rgb = np.asarray(im)[..., :3]
    try:
        return labels_from_rgb(rgb, max_mean_distance=max_mean_distance)
    except LabelMapError as e:
        raise MapReadError(f"{p}: {e}") from None


def read_rgb(path: str | os.PathLike, *, min_side: int = 1, max_side: int = MAX_SIDE) -> np.ndarray:
    """An image file as [H, W, 3] uint8 RGB (alpha dropped, grayscale replicated). Raises MapReadError."""
    with open_image(path, min_side=min_side, max_side=max_side) as im:
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            return _gray_to_rgb8(_gray_values(im))
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.array(im)


def read_height16(
    path: str | os.PathLike, *, normalised: bool = True, min_side: int = 1, max_side: int = MAX_SIDE
) -> np.ndarray:
    """A 16-bit height PNG as float32 [H, W]: ``v / 32767.5 - 1`` in -1..1 (``normalised``) or raw 0..65535.

    The training data's (and ``exporters.write_height_png16``'s) encoding. 8-bit images are refused: their
    256 levels would make stepped terrain.
    """
    p = Path(path)
    with open_image(p, min_side=min_side, max_side=max_side) as im:
        if im.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            raise MapReadError(
                f"{p}: expected a 16-bit grayscale height map, got Pillow mode {im.mode!r}; "
                "export the height as 16-bit PNG"
            )
        a = np.asarray(im)
        if a.ndim != 2:
            raise MapReadError(f"{p}: expected one channel, got shape {a.shape}")
    if a.min() < 0 or a.max() > 65535:
        raise MapReadError(f"{p}: values {a.min()}..{a.max()} are outside the 16-bit range")
    v = a.astype(np.float32)
    return v / np.float32(32767.5) - np.float32(1.0) if normalised else v


def read_height_tiff(path: str | os.PathLike, *, min_side: int = 1, max_side: int = MAX_SIDE) -> np.ndarray:
    """A one-channel float TIFF (e.g. ``height.tif`` in metres) as float32 [H, W]."""
    p = Path(path)
    with open_image(p, min_side=min_side, max_side=max_side) as im:
        if im.mode not in ("F", "I", "I;16", "I;16B", "I;16L", "I;16N", "L"):
            raise MapReadError(f"{p}: expected a one-channel height image, got Pillow mode {im.mode!r}")
        a = np.asarray(im).astype(np.float32)
    if not np.isfinite(a).all():
        raise MapReadError(f"{p}: the height contains NaN or infinite values")
    return a
