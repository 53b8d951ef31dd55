"""The maths of tiled generation: when to tile, where the tiles lie, how they blend. Numpy only.

A map is first reflect-padded to a multiple of the network's downsampling (``padded_shape``,
``pad_labels``). Above ``DEFAULT_TILE`` pixels per side it is generated in tiles (``choose_tile``) laid out
evenly with about ``DEFAULT_OVERLAP`` shared pixels (``tile_layout``) and blended with raised-cosine
weights (``blend_weights``). The runtime (:mod:`terrain_core.runtime`) runs the network on each tile; the
CLI asks the same ``choose_tile`` to estimate a run's memory before it starts.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_TILE = 1024  # maps with a side above this are generated in tiles of this size (pixels)
DEFAULT_OVERLAP = 64  # pixels shared by neighbouring tiles and blended


def padded_shape(h: int, w: int, downsample: int) -> tuple[int, int]:
    """(hp, wp): an h x w map rounded up to a multiple of the network's downsampling per side."""
    return -(-h // downsample) * downsample, -(-w // downsample) * downsample


def pad_labels(lab: np.ndarray, hp: int, wp: int) -> np.ndarray:
    """Reflect-pad a class map at the bottom/right to hp x wp (edge repeat for a 1-pixel side)."""
    h, w = lab.shape
    if (h, w) == (hp, wp):
        return lab
    out = lab
    if hp > h:
        out = np.pad(out, ((0, hp - h), (0, 0)), mode="reflect" if h > 1 else "edge")
    if wp > w:
        out = np.pad(out, ((0, 0), (0, wp - w)), mode="reflect" if w > 1 else "edge")
    return out


def choose_tile(
    tile: int | None, hp: int, wp: int, downsample: int, auto_above: int = DEFAULT_TILE
) -> int | None:
    """Tile side in pixels (a multiple of ``downsample``) for a padded hp x wp canvas, or None for one
    untiled pass.

    ``tile``: None = automatic (tiles of ``auto_above`` when a side exceeds it); 0 = never tile; N = tiles
    of N pixels rounded down to the downsampling (at least two steps of it). A tile that covers the whole
    canvas is no tiling. Raises ``ValueError`` for a tile that is not None, 0 or a positive pixel count.
    """
    if tile is None:
        if max(hp, wp) <= auto_above:
            return None
        tile = auto_above
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 0:
        raise ValueError(f"tile must be None, 0 or a positive pixel count, got {tile!r}")
    if tile == 0:
        return None
    t = max(2 * downsample, int(tile) // downsample * downsample)
    return None if t >= max(hp, wp) else t


def tile_overlap(overlap: int | None, tile: int | None) -> int:
    """The pixels neighbouring tiles share: ``overlap``, checked against the tile side ``tile`` (None =
    untiled), or by default ``DEFAULT_OVERLAP`` at most half a tile. Raises ``ValueError``."""
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, (tile or 0) // 2)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)):
        raise ValueError(f"overlap must be a pixel count, got {overlap!r}")
    overlap = int(overlap)
    if tile is not None and overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is not None and overlap >= tile // 2 + 1:
        raise ValueError(f"overlap {overlap} must be at most half the tile ({tile})")
    return overlap


def tile_starts(n: int, tile: int, overlap: int, align: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``0..n`` with at least ``overlap`` shared pixels.

    ``n`` and ``tile`` are multiples of ``align``; starts are too (the noise crop needs it). Starts are
    spread evenly, so every seam gets about the same overlap (not a thin sliver at the end).
    """
    if n <= tile:
        return [0]
    count = math.ceil((n - overlap) / (tile - overlap))
    span = n - tile
    starts = sorted({align * round(i * span / (count - 1) / align) for i in range(count)})
    return starts


def tile_layout(n: int, tile: int, overlap: int, align: int) -> tuple[int, list[int]]:
    """(tile length, starts) along one axis of ``n`` pixels for tiles of at most ``tile`` pixels.

    The fewest tiles that cover ``n`` with ``overlap`` shared pixels, then shrunk to the smallest length
    (a multiple of ``align``) that still does: the overlap then stays close to the one asked for instead of
    growing, and less is computed twice (4096 px in tiles of 1024: 5 tiles of 896, not 5 of 1024).
    """
    if n <= tile:
        return n, [0]
    count = math.ceil((n - overlap) / (tile - overlap))
    length = min(tile, max(2 * align, -(-(n + (count - 1) * overlap) // (count * align)) * align))
    # The overlap may use at most half a tile; rounded up to ``align`` (tile is a multiple of it).
    length = max(length, min(tile, -(-2 * overlap // align) * align))
    return length, tile_starts(n, length, overlap, align)


def blend_weights(starts: list[int], tile: int, n: int) -> list[np.ndarray]:
    """1-D blending weights of each tile (length ``min(tile, n)``), summing to 1 at every pixel of 0..n.

    Across each overlap a tile's weight ramps with a raised cosine from ~0 at its edge to 1 where its
    neighbour's edge is: the tile edges (the least reliable pixels, padded inside the network) count least,
    and the blend has no kink. Canvas borders get no ramp. Weights are normalised by their sum, which also
    covers a pixel shared by three tiles.
    """
    length = min(tile, n)
    raw = []
    for i, s in enumerate(starts):
        w = np.ones(length, np.float64)
        if i > 0:
            ov = starts[i - 1] + length - s  # shared with the previous tile
            if ov > 0:
                w[:ov] *= _ramp(ov)
        if i + 1 < len(starts):
            ov = s + length - starts[i + 1]
            if ov > 0:
                w[length - ov :] *= _ramp(ov)[::-1]
        raw.append(w)
    total = np.zeros(n, np.float64)
    for s, w in zip(starts, raw, strict=True):
        total[s : s + length] += w
    return [(w / total[s : s + length]).astype(np.float32) for s, w in zip(starts, raw, strict=True)]


def _ramp(n: int) -> np.ndarray:
    """Raised cosine over n pixels, strictly inside (0, 1); ramp(n) + ramp(n)[::-1] == 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * t)
