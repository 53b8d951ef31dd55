"""Class maps as Blender holds them (flat RGBA float pixels, bottom row first) and as terrain_core wants
them ([H, W] uint8 ids, top row = north); random starting maps; a checksum that identifies a map."""

from __future__ import annotations

import hashlib

import numpy as np

from terrain_core.imageio import class_ids_of_grey
from terrain_core.labels import NUM_CLASSES, PALETTE, LabelMapError, check_labels, labels_from_rgb

# Classes a new map is filled with and "Clear" restores: plains is the neutral ground the others are
# painted onto.
DEFAULT_FILL_CLASS = 1


def palette_float() -> np.ndarray:
    """[7, 3] float32 palette colours in 0..1, exactly as a byte image stores them (c / 255)."""
    return PALETTE.astype(np.float32) / 255.0


def labels_from_pixels(pixels: np.ndarray, width: int, height: int, *, strict: bool = False) -> np.ndarray:
    """Class ids [H, W] (row 0 = north) from Blender image pixels (flat RGBA floats, row 0 = south).

    Every pixel snaps to its nearest palette colour: soft brush edges and anti-aliasing blend class
    colours, and a blend is not a class. ``strict`` refuses an image that does not look painted with the
    palette at all (a photo loaded by mistake); the paint canvas itself is never refused.
    """
    a = np.asarray(pixels, dtype=np.float32)
    channels = a.size // max(width * height, 1)
    if width < 1 or height < 1 or channels not in (3, 4) or a.size != width * height * channels:
        raise LabelMapError(
            f"image pixel buffer of {a.size} values does not fit {width}x{height} RGBA; is the image empty?"
        )
    rgb = a.reshape(height, width, channels)[::-1, :, :3]
    return labels_from_rgb(rgb, max_mean_distance=60.0 if strict else None)


def pixels_from_labels(labels: np.ndarray) -> np.ndarray:
    """Flat RGBA float32 pixels (row 0 = south, alpha 1) of a class map, for ``pixels.foreach_set``."""
    check_labels(labels)
    lab = np.asarray(labels)
    rgba = np.ones((*lab.shape, 4), np.float32)
    rgba[..., :3] = palette_float()[lab]
    return np.ascontiguousarray(rgba[::-1]).ravel()


def filled(width: int, height: int, class_id: int) -> np.ndarray:
    """A [H, W] map of one class."""
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise LabelMapError(f"class id must be 0..{NUM_CLASSES - 1}, got {class_id}")
    return np.full((int(height), int(width)), int(class_id), np.uint8)


def map_checksum(labels: np.ndarray) -> str:
    """Short hex digest of a class map (shape + ids): tells whether a terrain was made from this map."""
    lab = np.ascontiguousarray(np.asarray(labels, dtype=np.uint8))
    h = hashlib.sha1(f"{lab.shape[0]}x{lab.shape[1]}:".encode())
    h.update(lab.tobytes())
    return h.hexdigest()[:16]


def _value_noise(rng: np.random.Generator, size: int, octaves: int, base: int) -> np.ndarray:
    """Fractal value noise [size, size] in about 0..1: bilinear-upsampled random grids, halving amplitude."""
    out = np.zeros((size, size), np.float64)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o + 1
        grid = rng.random((cells, cells))
        t = np.linspace(0.0, cells - 1.0, size)
        i0 = np.minimum(t.astype(np.int64), cells - 2)
        f = t - i0
        f = f * f * (3 - 2 * f)  # smoothstep: no visible grid creases
        rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]  # [size, cells]
        layer = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
        out += amp * layer
        total += amp
        amp *= 0.5
    return out / total


def random_map(seed: int, size: int = 256) -> np.ndarray:
    """A plausible starting map [size, size] from a seed: an elevation field and a moisture field cut into
    classes (sea at the bottom of the elevation, then lowland split by moisture into desert, plains and
    forest, then hills, highland, and mountains on the tops)."""
    if size < 8:
        raise ValueError(f"map size must be at least 8 pixels, got {size}")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    elev = _value_noise(rng, size, 5, 3)
    moist = _value_noise(rng, size, 3, 2)
    # Cut at quantiles, so every seed gets some sea and some mountains whatever the noise's range.
    q = np.quantile(elev, [0.22, 0.62, 0.80, 0.92])
    lab = np.full((size, size), 1, np.uint8)  # plains
    lab[(elev < q[1]) & (moist > 0.55)] = 2  # forest on wet lowland
    lab[(elev < q[1]) & (moist < 0.38)] = 4  # desert on dry lowland
    lab[elev >= q[1]] = 3  # hills
    lab[(elev >= q[2]) & (moist < 0.5)] = 6  # dry uplands: highland
    lab[(elev >= q[2]) & (moist >= 0.5)] = 3
    lab[elev >= q[3]] = 5  # mountains
    lab[elev < q[0]] = 0  # sea
    return lab


def labels_from_rgb_array(rgba: np.ndarray) -> np.ndarray:
    """Class ids of a loaded map image [H, W, 3|4] float 0..1 (row 0 = top), refusing non-maps.

    A grey image whose values are all class ids 0..6 (a map saved as ids by another tool) reads as ids
    (``terrain_core.imageio.class_ids_of_grey``, the rule of the files the CLI reads).
    """
    a = np.asarray(rgba, dtype=np.float32)
    grey = a[..., :3]
    if np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 0], grey[..., 2]):
        ids = class_ids_of_grey(grey[..., 0] * 255.0, atol=1e-3)
        if ids is not None:
            return ids
    return labels_from_rgb(a)
