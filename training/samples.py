"""Sample grids and a hill-shade for looking at heights (numpy; no torch)."""

from __future__ import annotations

import numpy as np

from terrain_core.labels import PALETTE
from terrain_core.outputs import hillshade
from terrain_core.result import to_uint8


def auto_z_scale(height: np.ndarray) -> float:
    """A vertical exaggeration that puts the median slope near 30 degrees, so any height map shades."""
    gy, gx = np.gradient(np.asarray(height, np.float64))
    g = np.hypot(gx, gy)
    med = float(np.median(g))
    if not med > 1e-12:
        med = float(g.mean()) or 1.0
    return float(np.tan(np.radians(30.0)) / med)


def auto_hillshade(height: np.ndarray, azimuth_deg: float = 315.0) -> np.ndarray:
    """Shade [H, W] float64 0..1 of a height map [H, W] in any units, lit from ``azimuth_deg`` at 45 degrees
    (``terrain_core.outputs.hillshade``, central differences) after ``auto_z_scale``'s exaggeration."""
    h = np.asarray(height, np.float64)
    if h.ndim != 2:
        raise ValueError(f"height must be [H, W], got {h.shape}")
    return hillshade(h * auto_z_scale(h), 1.0, azimuth_deg, gradient="central", dtype=np.float64)


def height_tile(height: np.ndarray) -> np.ndarray:
    """A height map [H, W] in -1..1 as an image [H, W, 3] uint8: its NW hill-shade, tinted by height
    (dark low, light high) so that relief and level read at once."""
    level = (np.asarray(height, np.float64) + 1.0) * 0.5
    return to_uint8(np.stack([auto_hillshade(height) * (0.55 + 0.45 * level)] * 3, -1))


def sample_grid(
    labels: np.ndarray,
    texture: np.ndarray,
    shaded: np.ndarray,
    height: np.ndarray,
    real: np.ndarray | None,
    pad: int = 2,
) -> np.ndarray:
    """Rows of (segmentation | texture | shaded | height hill-shade | real) as one uint8 [H, W, 3] image.

    labels [N, H, W] ids; texture, shaded [N, H, W, 3] 0..1; height [N, H, W] -1..1; real [N, H, W, 3]
    0..1 or None (the column is then left out).
    """
    n, h, w = labels.shape
    cols = 4 + (real is not None)
    img = np.full((n * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        tiles = [PALETTE[labels[i]], to_uint8(texture[i]), to_uint8(shaded[i]), height_tile(height[i])]
        if real is not None:
            tiles.append(to_uint8(real[i]))
        y = pad + i * (h + pad)
        for j, t in enumerate(tiles):
            x = pad + j * (w + pad)
            img[y : y + h, x : x + w] = t
    return img
