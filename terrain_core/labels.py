"""The 7 terrain classes, their palette, and conversion between painted images and class ids.

The colours and their order are the original's (public Kaggle data, ``*_i2.png``): a pixel's class is the
nearest palette colour, Euclidean in RGB. Names and descriptions are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TerrainClass:
    id: int
    name: str  # short identifier, used in files and UI
    rgb: tuple[int, int, int]  # the original's palette colour, 0..255
    description: str


CLASSES: tuple[TerrainClass, ...] = (
    TerrainClass(0, "water", (17, 141, 215), "Sea, lakes and rivers: low and flat"),
    TerrainClass(1, "plains", (225, 227, 155), "Grassland and low plains: gentle relief"),
    TerrainClass(2, "forest", (127, 173, 123), "Forest and green lowland to hills"),
    TerrainClass(3, "hills", (185, 122, 87), "Brown hills and uplands: rolling to rugged"),
    TerrainClass(4, "desert", (230, 200, 181), "Arid land and sand: pale, smooth relief"),
    TerrainClass(5, "mountains", (150, 150, 150), "Rocky high mountains: steep and rough"),
    TerrainClass(6, "highland", (193, 190, 175), "Barren highland and tundra: grey-beige plateaus"),
)

NUM_CLASSES = len(CLASSES)
PALETTE = np.array([c.rgb for c in CLASSES], dtype=np.uint8)  # [7, 3]
# The largest class map side anything here accepts: larger maps need more than ~7.5 GB for the float
# outputs alone, so they are refused up front (the image reader, the runtime, the CLI).
MAX_SIDE = 16384
CLASS_NAMES = tuple(c.name for c in CLASSES)

# Mean distance from a pixel to its nearest palette colour above which a painted image is refused: the
# palette colours are 20..150 apart, so an image whose colours sit this far from all of them is not a map.
DEFAULT_MAX_MEAN_DISTANCE = 60.0


class LabelMapError(ValueError):
    """A painted image cannot be read as a terrain class map; the message says why and what to do."""


def class_by_name(name: str) -> TerrainClass:
    for c in CLASSES:
        if c.name == name:
            return c
    raise KeyError(f"unknown terrain class {name!r}; known: {', '.join(CLASS_NAMES)}")


def labels_from_rgb(
    image: np.ndarray,
    *,
    max_mean_distance: float | None = DEFAULT_MAX_MEAN_DISTANCE,
    return_distance: bool = False,
):
    """Class ids [H, W] uint8 from a painted RGB or RGBA image [H, W, 3|4] by nearest palette colour.

    ``image`` may be uint8 (0..255), uint16 (0..65535) or float (0..1). Alpha is ignored. When
    ``max_mean_distance`` is set and the mean RGB distance to the nearest palette colour exceeds it, a
    ``LabelMapError`` says the image does not look like a map painted with the palette.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        raise LabelMapError(
            f"expected a colour image [H, W, 3 or 4], got a single-channel image of shape {arr.shape}; "
            "paint the map with the 7 palette colours (or pass class ids to the generator directly)"
        )
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise LabelMapError(f"expected an image of shape [H, W, 3 or 4], got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise LabelMapError(f"the image is empty (shape {arr.shape})")
    rgb = arr[..., :3]
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32)
    elif rgb.dtype == np.uint16:
        rgb = rgb.astype(np.float32) / 257.0
    elif np.issubdtype(rgb.dtype, np.floating):
        if not np.isfinite(rgb).all():
            raise LabelMapError("the image contains NaN or infinite values")
        rgb = rgb.astype(np.float32) * 255.0
    else:
        raise LabelMapError(f"unsupported pixel type {rgb.dtype}; use uint8, uint16 or float in 0..1")
    # Nearest colour by expanding |x - p|^2 = |x|^2 - 2 x.p + |p|^2, done in row chunks to bound memory.
    pal = PALETTE.astype(np.float32)  # [7, 3]
    pal_sq = (pal**2).sum(1)  # [7]
    h, w = rgb.shape[:2]
    labels = np.empty((h, w), dtype=np.uint8)
    dist_sum = 0.0
    rows = max(1, (1 << 20) // max(w, 1))
    for r0 in range(0, h, rows):
        block = rgb[r0 : r0 + rows].reshape(-1, 3)
        d2 = (block**2).sum(1, keepdims=True) - 2.0 * block @ pal.T + pal_sq[None]
        idx = d2.argmin(1)
        labels[r0 : r0 + rows] = idx.reshape(-1, w).astype(np.uint8)
        dist_sum += float(np.sqrt(np.maximum(d2[np.arange(len(idx)), idx], 0.0)).sum())
    mean_dist = dist_sum / (h * w)
    if max_mean_distance is not None and mean_dist > max_mean_distance:
        raise LabelMapError(
            f"the image's colours are far from the terrain palette (mean distance {mean_dist:.0f} > "
            f"{max_mean_distance:.0f} in RGB units); paint it with the 7 class colours "
            f"({', '.join(f'{c.name} {c.rgb}' for c in CLASSES)})"
        )
    return (labels, mean_dist) if return_distance else labels


def rgb_from_labels(labels: np.ndarray) -> np.ndarray:
    """Palette image [H, W, 3] uint8 from class ids [H, W]."""
    lab = np.asarray(labels)
    check_labels(lab)
    return PALETTE[lab]


def check_labels(labels: np.ndarray) -> None:
    """Raise ``LabelMapError`` unless ``labels`` is a non-empty [H, W] integer map with ids 0..6."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise LabelMapError(f"class map must be 2-D [H, W], got shape {lab.shape}")
    if lab.size == 0:
        raise LabelMapError(f"class map is empty (shape {lab.shape})")
    if not np.issubdtype(lab.dtype, np.integer):
        raise LabelMapError(f"class map must hold integer class ids, got dtype {lab.dtype}")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= NUM_CLASSES:
        raise LabelMapError(f"class ids must be in 0..{NUM_CLASSES - 1}, found {lo}..{hi}")


def one_hot(labels: np.ndarray) -> np.ndarray:
    """One-hot float32 [7, H, W] from class ids [H, W]."""
    lab = np.asarray(labels)
    check_labels(lab)
    return (np.arange(NUM_CLASSES, dtype=lab.dtype)[:, None, None] == lab[None]).astype(np.float32)


def class_shares(labels: np.ndarray) -> dict[str, float]:
    """Fraction of pixels per class name."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    total = max(int(counts.sum()), 1)
    return {c.name: float(counts[c.id]) / total for c in CLASSES}


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a class map [H, W] to [height, width], sampled at pixel centres (ids are
    categories: never interpolate them, so no new class appears at a border). The same array when the size
    already matches."""
    lab = np.asarray(labels)
    h, w = lab.shape
    if (h, w) == (height, width):
        return lab
    ys = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return np.ascontiguousarray(lab[ys[:, None], xs[None, :]])
