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

Strict reading (``check_image_file``, used before any decoder runs, here and by the add-on's Blender
reader): the size in the file's header is checked against the limits before decoding (a 20000^2 map is
refused in milliseconds, without allocating it), and a PNG's compressed data must decode to exactly the
rows its header announces (Pillow and Blender pad a file whose data stops early, which silently turned
the missing rows into water). Pillow's own size warnings stay inside this module.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from terrain_core.labels import (
    DEFAULT_MAX_MEAN_DISTANCE,
    MAX_SIDE,
    NUM_CLASSES,
    LabelMapError,
    labels_from_rgb,
)

MIN_SIDE = 8  # smaller maps carry no terrain worth generating (and 1x1 is usually a broken export)
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def header_size(path: str | os.PathLike) -> tuple[str, int, int] | None:
    """(format, width, height) from the first bytes of a PNG, JPEG, BMP or GIF file, without decoding;
    None for other formats (their size is checked after opening, still before decoding the pixels)."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == PNG_SIGNATURE:
            if len(head) < 24 or head[12:16] != b"IHDR":
                raise MapReadError(f"{path}: not a valid PNG file (no IHDR header); re-save it")
            w, h = struct.unpack(">II", head[16:24])
            return "PNG", w, h
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return "BMP", abs(w), abs(h)
        if head[:4] in (b"GIF8",) and len(head) >= 10:
            w, h = struct.unpack("<HH", head[6:10])
            return "GIF", w, h
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(f, path)
    return None


def _jpeg_size(f, path) -> tuple[str, int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None  # no frame header: Pillow will say what is wrong
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return "JPEG", w, h
        f.seek(length - 2, 1)


def _png_expected_bytes(w: int, h: int, depth: int, ctype: int, interlace: int) -> int:
    """Bytes the IDAT stream of a PNG must decompress to: per row one filter byte plus the samples."""
    bits = _PNG_CHANNELS[ctype] * depth
    if not interlace:
        return h * (1 + (w * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        pw, ph = max(0, -(-(w - x0) // dx)), max(0, -(-(h - y0) // dy))
        if pw and ph:
            total += ph * (1 + (pw * bits + 7) // 8)
    return total


def check_png_data(path: str | os.PathLike) -> None:
    """Raise ``MapReadError`` unless the PNG is whole: every chunk complete with a matching CRC, an IEND at
    the end, and image data that decompresses to exactly the size its header announces. Streams the file
    (memory stays small whatever the image size)."""
    p = Path(path)

    def truncated(detail: str) -> MapReadError:
        return MapReadError(
            f"{p}: the image data is corrupt or truncated{detail} (the file was not saved or copied "
            "completely); re-save or re-download it"
        )

    with open(p, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise MapReadError(f"{p}: not a PNG file; {IMAGE_HINT}")
        z = zlib.decompressobj()
        header = None
        expected = got = 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                break  # no IEND: the file ends early
            length, kind = struct.unpack(">I4s", head)
            if length > 0x7FFFFFFF or (header is None and (kind != b"IHDR" or length != 13)):
                raise MapReadError(f"{p}: the PNG structure is damaged; re-save the file")
            crc = zlib.crc32(kind)
            left = length
            while left:
                piece = f.read(min(left, 1 << 20))
                if not piece:
                    break
                left -= len(piece)
                crc = zlib.crc32(piece, crc)
                if kind == b"IHDR":
                    if len(piece) < 13:
                        break
                    header = struct.unpack(">IIBBBBB", piece)
                    w, h, depth, ctype, _c, _f, interlace = header
                    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
                        raise MapReadError(f"{p}: the PNG header is damaged (type {ctype}, depth {depth})")
                    expected = _png_expected_bytes(w, h, depth, ctype, interlace)
                elif kind == b"IDAT":
                    got += len(z.decompress(piece, 1 << 22))
                    while z.unconsumed_tail and got <= expected:
                        got += len(z.decompress(z.unconsumed_tail, 1 << 22))
                    if got > expected:
                        raise MapReadError(f"{p}: the PNG holds more data than its header says; re-save it")
            stored = f.read(4)
            if left or len(stored) < 4:
                break  # the file ends inside this chunk
            if struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
                name = kind.decode("latin-1")
                name = name if name.isalpha() else ascii(name)  # a damaged type may hold a newline
                raise MapReadError(
                    f"{p}: the PNG data is corrupt (its {name} chunk fails the checksum); re-save it"
                )
            if kind == b"IEND":
                break
    if header is None:
        raise truncated(": it ends inside its header")
    got += len(z.flush())
    if got < expected or not z.eof or kind != b"IEND" or len(stored) < 4:
        w, h, interlace = header[0], header[1], header[6]
        row = expected // max(h, 1) if not interlace else 0
        raise truncated(f": it holds {got // row} of {h} rows" if row and got < expected else "")


def check_image_file(
    path: str | os.PathLike, *, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE
) -> tuple[int, int] | None:
    """Checks before decoding an image file (no Pillow needed): it exists, is not empty, its header size is
    within ``min_side``..``max_side``, and a PNG's data is complete. Returns (width, height) from the header
    (None for formats whose header is not read here). Raises ``MapReadError``."""
    p = Path(path)
    if not p.exists():
        raise MapReadError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise MapReadError(f"{p}: is a folder, not an image file")
    try:
        if p.stat().st_size == 0:
            raise MapReadError(f"{p}: the file is empty (0 bytes); {IMAGE_HINT}")
        found = header_size(p)
    except OSError as e:
        raise MapReadError(f"{p}: cannot be read ({e.strerror or e})") from e
    except (struct.error, ValueError) as e:
        raise MapReadError(f"{p}: the image header is damaged ({e}); re-save the file") from None
    if found is None:
        return None
    kind, w, h = found
    _check_size(p, w, h, min_side, max_side)
    if kind == "PNG":
        try:
            check_png_data(p)
        except zlib.error as e:
            raise MapReadError(f"{p}: the image data is corrupt ({e}); re-save the file") from None
        except OSError as e:
            raise MapReadError(f"{p}: cannot be read ({e.strerror or e})") from e
    return w, h


def _check_size(p: Path, w: int, h: int, min_side: int, max_side: int) -> None:
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


def open_image(path: str | os.PathLike, *, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE):
    """A decoded Pillow image (first frame), after the strict checks (``check_image_file``) and with the
    decoded size compared to the header's. Raises MapReadError; Pillow's warnings never reach the user."""
    Image = _pil()
    from PIL import ImageFile, UnidentifiedImageError

    p = Path(path)
    header = check_image_file(p, min_side=min_side, max_side=max_side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning and format chatter: our limits apply
        try:
            with _allow_pixels(max_side * max_side):
                im = Image.open(p)
        except UnidentifiedImageError:
            raise MapReadError(f"{p}: not an image file Pillow can read; {IMAGE_HINT}") from None
        except Image.DecompressionBombError:
            raise MapReadError(f"{p}: the image is larger than {max_side}x{max_side} pixels") from None
        except OSError as e:
            if e.errno is not None:  # a file-system error (permissions, I/O)
                raise MapReadError(f"{p}: cannot be read ({e.strerror or e})") from None
            raise MapReadError(f"{p}: the image data is corrupt or truncated ({e}); re-save it") from None
        except (SyntaxError, ValueError, EOFError, struct.error) as e:
            raise MapReadError(f"{p}: the image data is corrupt or truncated ({e}); re-save it") from None
        try:
            w, h = im.size
            _check_size(p, w, h, min_side, max_side)
            if header is not None and header != (w, h):
                raise MapReadError(
                    f"{p}: the image header is inconsistent ({header} vs {(w, h)}); re-save it"
                )
            old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # never pad missing data, whoever set it
            try:
                with _allow_pixels(max_side * max_side):
                    im.load()
            except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
                raise MapReadError(
                    f"{p}: the image data is corrupt or truncated ({e}); re-save the file"
                ) from None
            except MemoryError:
                raise MapReadError(f"{p}: not enough memory to decode a {w}x{h} image") from None
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated
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


def class_ids_of_grey(values: np.ndarray, *, atol: float = 0.0) -> np.ndarray | None:
    """Class ids [H, W] uint8 of a grey image whose values are the ids themselves (a map saved as ids by
    another tool): every value a whole number within ``atol`` and 0..6. None: the values are grey colours.

    ``atol``: how far from a whole number a float value may be (0 for files; the add-on reads 8-bit images
    as floats c / 255, which times 255 come back within float32 rounding of c).
    """
    a = np.asarray(values)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            return None
        whole = np.rint(a)
        if np.abs(a - whole).max(initial=0.0) > atol:
            return None
        a = whole
    if a.min() >= 0 and a.max() < NUM_CLASSES:
        return a.astype(np.uint8)
    return None


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
            ids = class_ids_of_grey(a)
            if ids is not None:
                return ids
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

    The training data's (and ``outputs.write_height_png16``'s) encoding. 8-bit images are refused: their
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
