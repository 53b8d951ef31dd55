"""Raster file formats written by hand, in row blocks: PNG, GeoTIFF (float32), EXR (one channel), raw 16-bit.

numpy and zlib only, so Blender's Python (no Pillow, no GDAL) runs every writer here too. Each writer
takes a :class:`Rows` source that makes the pixels a block of rows at a time, and never holds more than
one block (plus the compressor's buffer): memory stays bounded by the block, not by the map, and a
height in metres or an 8-bit texture is converted per block instead of as a whole-map copy.

Row 0 of a source is north (the top of the image) for every format; ``write_raw16`` can write the rows
bottom-up (the order Unity's RAW import expects).

Formats
- PNG: 8-bit grey/RGB/RGBA or 16-bit grey, every row Paeth-filtered (``filter_type=4``), one zlib stream
  split into IDAT chunks per block.
- GeoTIFF: one float32 band, Adobe-deflate strips with the floating-point predictor (3), plus
  ModelPixelScale and ModelTiepoint: the cell size and the position of the raster, without a coordinate
  reference system (the terrain is invented, it lies nowhere on Earth). GDAL/rasterio then report the
  cell size instead of "not georeferenced" 1-unit cells, and no CRS. There is no GeoKey directory on
  purpose: with one, GDAL invents an unnamed local CRS of unknown units; without it, pixels are areas
  (GDAL's default) and the CRS is none.
- EXR: scanline OpenEXR with one FLOAT channel (``Y`` by default: Blender and most readers show a ``Y``-only
  file as grey), ZIP compression (blocks of 16 lines).
- raw16: headerless little-endian uint16, as engines import heights.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Pixels per block: about 1 MB of float32 per block whatever the width, small enough to stay in cache-ish
# buffers, large enough that per-block Python overhead is negligible.
BLOCK_PIXELS = 1 << 18


@dataclass(frozen=True)
class Rows:
    """A raster of ``height`` x ``width`` (x ``channels``) made a block of rows at a time.

    ``block(r0, r1)`` returns rows r0 .. r1 - 1: [r1 - r0, width] or [r1 - r0, width, channels].
    """

    height: int
    width: int
    block: Callable[[int, int], np.ndarray]
    channels: int = 1

    def blocks(self, rows: int | None = None, *, reverse: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) over the whole raster, ``rows`` rows per block (default: ~BLOCK_PIXELS)."""
        n = rows or max(1, BLOCK_PIXELS // max(1, self.width * self.channels))
        starts = range(0, self.height, n)
        for r0 in reversed(starts) if reverse else starts:
            yield r0, self.block(r0, min(self.height, r0 + n))

    def gather(self, row_idx: np.ndarray, col_idx: np.ndarray) -> np.ndarray:
        """The samples at rows ``row_idx`` x columns ``col_idx`` (sorted), read block by block."""
        row_idx = np.asarray(row_idx, dtype=np.int64)
        out = []
        for r0, blk in self.blocks():
            sel = row_idx[(row_idx >= r0) & (row_idx < r0 + blk.shape[0])] - r0
            if sel.size:
                out.append(blk[sel][:, col_idx])
        return np.concatenate(out, axis=0)


def array_rows(a: np.ndarray, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> Rows:
    """Rows of an in-memory array, each block passed through ``convert`` (e.g. float to uint8) if given."""
    a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected [H, W] or [H, W, C], got shape {a.shape}")
    conv = convert or (lambda b: b)
    return Rows(a.shape[0], a.shape[1], lambda r0, r1: conv(a[r0:r1]), a.shape[2] if a.ndim == 3 else 1)


def corner_rows(a: np.ndarray, out_h: int, out_w: int, convert: Callable | None = None) -> Rows:
    """Bilinear samples of the pixels ``a`` [H, W] at ``out_h`` x ``out_w`` points on a corner grid.

    Sample (i, j) lies at i / (out_h - 1), j / (out_w - 1) of the image's full extent (its outer pixel
    edges), so the first and last samples sit on the image's edges: the "2^n + 1" layout of engine
    height grids. Positions beyond the outer pixel centres take the edge pixels. With out = H + 1 this is
    ``outputs.plus_one_resample`` (interior corners average their four pixels).
    """
    a = np.asarray(a)
    if a.ndim != 2 or min(a.shape) < 1 or out_h < 2 or out_w < 2:
        raise ValueError(f"expected [H, W] pixels and at least 2x2 samples, got {a.shape} -> {out_h}x{out_w}")
    h, w = a.shape

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # pixel-centre coordinate of each sample; centre k is at edge coordinate k + 0.5
        x = np.clip(np.arange(n_out) * (n_in / (n_out - 1)) - 0.5, 0.0, n_in - 1)
        i0 = np.minimum(np.floor(x).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (x - i0).astype(np.float32)

    y0, y1, fy = axis(out_h, h)
    x0, x1, fx = axis(out_w, w)
    conv = convert or (lambda b: b)

    def block(r0: int, r1: int) -> np.ndarray:
        lo, hi = int(y0[r0]), int(y1[r1 - 1]) + 1  # the input rows this block reads
        src = a[lo:hi].astype(np.float32, copy=False)
        top, bot = src[y0[r0:r1] - lo], src[y1[r0:r1] - lo]
        col = top + (bot - top) * fy[r0:r1, None]  # [rows, W]
        left, right = col[:, x0], col[:, x1]
        return conv(left + (right - left) * fx[None, :])

    return Rows(out_h, out_w, block)


# ------------------------------------------------------------------------------------------------ PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _paeth(cur: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter 4 of byte rows ``cur`` [n, L] given the row above the first one ``prev`` [L]."""
    x = cur.astype(np.int16)
    up = np.concatenate([prev[None].astype(np.int16), x[:-1]], axis=0)  # b
    left = np.zeros_like(x)  # a
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)  # c
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    return ((x - pred) & 0xFF).astype(np.uint8)


class PngStream:
    """A PNG written a block of rows at a time: ``add(block)`` for every block, top to bottom, then
    ``close()``. Several streams can be fed from one computation (the two splat masks)."""

    def __init__(self, path: str | Path, width: int, height: int, channels: int, level: int = 6):
        self.color_type = {1: 0, 2: 4, 3: 2, 4: 6}.get(channels)
        if self.color_type is None:
            raise ValueError(f"PNG needs 1-4 channels, got {channels}")
        self.path, self.width, self.height, self.channels = Path(path), width, height, channels
        self.comp = zlib.compressobj(level)
        self.prev: np.ndarray | None = None
        self.depth = 0
        self.rows_done = 0
        self.f = open(self.path, "wb")  # closed by close(), and by add() on an error

    def add(self, blk: np.ndarray) -> None:
        try:
            if self.prev is None:
                self.depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.asarray(blk).dtype, 0)
                if not self.depth or (self.depth == 16 and self.channels != 1):
                    raise ValueError(f"PNG rows must be uint8, or uint16 grey; got {np.asarray(blk).dtype}")
                ihdr = struct.pack(">IIBBBBB", self.width, self.height, self.depth, self.color_type, 0, 0, 0)
                self.f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr))
                self.prev = np.zeros(self.width * self.channels * self.depth // 8, np.uint8)
            raw = np.ascontiguousarray(blk.astype(">u2") if self.depth == 16 else blk)
            b = raw.view(np.uint8).reshape(raw.shape[0], -1)
            filtered = np.empty((b.shape[0], b.shape[1] + 1), np.uint8)
            filtered[:, 0] = 4
            filtered[:, 1:] = _paeth(b, self.prev, self.channels * self.depth // 8)
            self.prev = b[-1].copy()
            self.rows_done += b.shape[0]
            data = self.comp.compress(filtered.tobytes())
            if data:
                self.f.write(_png_chunk(b"IDAT", data))
        except BaseException:
            self.f.close()
            raise

    def close(self) -> Path:
        try:
            if self.rows_done != self.height:
                raise ValueError(f"{self.path.name}: got {self.rows_done} rows of {self.height}")
            self.f.write(_png_chunk(b"IDAT", self.comp.flush()) + _png_chunk(b"IEND", b""))
        finally:
            self.f.close()
        return self.path


def write_png(path: str | Path, rows: Rows, level: int = 6) -> Path:
    """PNG of uint8 rows (1-4 channels: grey, grey+alpha, RGB, RGBA) or uint16 grey rows."""
    png = PngStream(path, rows.width, rows.height, rows.channels, level)
    for _r0, blk in rows.blocks():
        png.add(blk)
    return png.close()


# -------------------------------------------------------------------------------------------- GeoTIFF

_TIFF_SHORT, _TIFF_LONG, _TIFF_DOUBLE = 3, 4, 12


def _float_predictor(rows: np.ndarray) -> np.ndarray:
    """TIFF predictor 3 of float32 rows [n, W]: big-endian byte planes (most significant first), then the
    byte-wise difference along the row (what libtiff's fpDiff does for one sample per pixel)."""
    n, w = rows.shape
    planes = np.ascontiguousarray(rows.astype(">f4")).view(np.uint8).reshape(n, w, 4)
    b = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(n, 4 * w)
    out = b.copy()
    out[:, 1:] -= b[:, :-1]  # uint8 wraps: differences modulo 256
    return out


def write_geotiff(
    path: str | Path,
    rows: Rows,
    *,
    cell_size: tuple[float, float],
    origin: tuple[float, float],
    level: int = 6,
) -> Path:
    """Float32 GeoTIFF without a CRS: ``cell_size`` (x, y) ground units per pixel, ``origin`` (x, y) of the
    upper-left corner of the upper-left pixel; x grows east (columns), y north (so rows go down in y)."""
    sx, sy = (float(v) for v in cell_size)
    if not (sx > 0 and sy > 0 and np.isfinite([sx, sy, *origin]).all()):
        raise ValueError(f"cell size must be positive and the origin finite, got {cell_size}, {origin}")
    if rows.channels != 1:
        raise ValueError("a height GeoTIFF has one band")
    path = Path(path)
    strip_rows = max(1, BLOCK_PIXELS // (4 * rows.width))  # ~256 KB of floats per strip
    offsets: list[int] = []
    counts: list[int] = []
    with open(path, "wb") as f:
        f.write(b"II*\x00\x00\x00\x00\x00")  # little-endian TIFF; IFD offset filled in at the end
        for _r0, blk in rows.blocks(strip_rows):
            blk = np.asarray(blk, dtype=np.float32)
            if not np.isfinite(blk).all():
                raise ValueError("height contains NaN or infinite values")
            data = zlib.compress(_float_predictor(blk).tobytes(), level)
            offsets.append(f.tell())
            counts.append(len(data))
            f.write(data)
        if f.tell() % 2:
            f.write(b"\x00")
        ifd_at = f.tell()
        entries = [  # (tag, type, values), ascending tags
            (256, _TIFF_LONG, [rows.width]),
            (257, _TIFF_LONG, [rows.height]),
            (258, _TIFF_SHORT, [32]),  # bits per sample
            (259, _TIFF_SHORT, [8]),  # Adobe deflate
            (262, _TIFF_SHORT, [1]),  # min-is-black
            (273, _TIFF_LONG, offsets),
            (277, _TIFF_SHORT, [1]),
            (278, _TIFF_LONG, [strip_rows]),
            (279, _TIFF_LONG, counts),
            (284, _TIFF_SHORT, [1]),  # contiguous
            (317, _TIFF_SHORT, [3]),  # floating-point predictor
            (339, _TIFF_SHORT, [3]),  # IEEE float samples
            (33550, _TIFF_DOUBLE, [sx, sy, 0.0]),  # ModelPixelScale
            (33922, _TIFF_DOUBLE, [0.0, 0.0, 0.0, float(origin[0]), float(origin[1]), 0.0]),  # Tiepoint
        ]
        fmt = {_TIFF_SHORT: "H", _TIFF_LONG: "I", _TIFF_DOUBLE: "d"}
        extra_at = ifd_at + 2 + 12 * len(entries) + 4  # values too large for an entry go after the IFD
        ifd, extra = [struct.pack("<H", len(entries))], []
        for tag, typ, vals in entries:
            payload = struct.pack(f"<{len(vals)}{fmt[typ]}", *vals)
            if len(payload) <= 4:
                ifd.append(struct.pack("<HHI", tag, typ, len(vals)) + payload.ljust(4, b"\x00"))
            else:
                ifd.append(struct.pack("<HHII", tag, typ, len(vals), extra_at))
                extra.append(payload)
                extra_at += len(payload)
        ifd.append(struct.pack("<I", 0))  # no next IFD
        f.write(b"".join(ifd) + b"".join(extra))
        f.seek(4)
        f.write(struct.pack("<I", ifd_at))
    return path


# ------------------------------------------------------------------------------------------------ EXR

_EXR_ZIP, _EXR_ZIP_LINES = 3, 16


def _exr_attr(name: str, typ: str, data: bytes) -> bytes:
    return name.encode() + b"\x00" + typ.encode() + b"\x00" + struct.pack("<i", len(data)) + data


def _exr_zip(raw: bytes) -> bytes:
    """OpenEXR ZIP block: bytes split into even/odd halves, delta-coded (+128), then zlib."""
    b = np.frombuffer(raw, np.uint8)
    t = np.concatenate([b[0::2], b[1::2]])
    d = t.copy()
    d[1:] = t[1:] - t[:-1] + np.uint8(128)  # uint8 arithmetic wraps modulo 256, as OpenEXR's predictor
    return zlib.compress(d.tobytes(), 6)


def write_exr(path: str | Path, rows: Rows, channel: str = "Y") -> Path:
    """Scanline OpenEXR, one 32-bit FLOAT channel named ``channel``, ZIP-compressed."""
    if rows.channels != 1:
        raise ValueError("write_exr writes one channel")
    path = Path(path)
    w, h = rows.width, rows.height
    chlist = channel.encode() + b"\x00" + struct.pack("<iB3xii", 2, 0, 1, 1) + b"\x00"  # 2 = FLOAT
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = (
        b"\x76\x2f\x31\x01"
        + struct.pack("<i", 2)  # version 2, single-part scanline
        + _exr_attr("channels", "chlist", chlist)
        + _exr_attr("compression", "compression", bytes([_EXR_ZIP]))
        + _exr_attr("dataWindow", "box2i", box)
        + _exr_attr("displayWindow", "box2i", box)
        + _exr_attr("lineOrder", "lineOrder", b"\x00")  # increasing y
        + _exr_attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
        + _exr_attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
        + _exr_attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
        + b"\x00"
    )
    n_blocks = -(-h // _EXR_ZIP_LINES)
    offsets = []
    with open(path, "wb") as f:
        f.write(header)
        table_at = f.tell()
        f.write(b"\x00" * (8 * n_blocks))  # line offset table, filled in at the end
        for r0, blk in rows.blocks(_EXR_ZIP_LINES):
            blk = np.asarray(blk, dtype="<f4")
            if not np.isfinite(blk).all():
                raise ValueError("height contains NaN or infinite values")
            raw = np.ascontiguousarray(blk).tobytes()
            data = _exr_zip(raw)
            if len(data) >= len(raw):  # incompressible: OpenEXR stores such a block as it is
                data = raw
            offsets.append(f.tell())
            f.write(struct.pack("<ii", r0, len(data)) + data)
        f.seek(table_at)
        f.write(struct.pack(f"<{n_blocks}Q", *offsets))
    return path


# ---------------------------------------------------------------------------------------------- raw16


def write_raw16(path: str | Path, rows: Rows, *, bottom_up: bool = False) -> Path:
    """Headerless little-endian uint16 samples, row by row (the last row first with ``bottom_up``)."""
    if rows.channels != 1:
        raise ValueError("raw16 has one channel")
    path = Path(path)
    with open(path, "wb") as f:
        for _r0, blk in rows.blocks(reverse=bottom_up):
            if blk.dtype != np.uint16:
                raise ValueError(f"raw16 rows must be uint16, got {blk.dtype}")
            f.write(np.ascontiguousarray(blk[::-1] if bottom_up else blk).astype("<u2").tobytes())
    return path
