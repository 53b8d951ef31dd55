"""Measures of relief that show how far generated terrain is from real terrain, usable on any height map.

numpy + scipy only (evaluation and training tools; not needed inside Blender).

- :func:`border_step_index`: relief concentrated along painted class borders (the "terraces" of a
  generator that maps each class to a height offset) against relief inside the classes.
- :func:`mean_slope_by_class`: mean height-gradient magnitude per class.
- :func:`layout_detail_correlation`: how much a new seed changes the layout and the detail of a map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WATER = 0  # class id of water (terrain_core.labels): the base level, left out of land-only measures


def _check(height: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    h = np.asarray(height, dtype=np.float64)
    if h.ndim != 2 or min(h.shape) < 2:
        raise ValueError(f"height must be a 2-D map of at least 2x2, got shape {h.shape}")
    if labels is not None and np.shape(labels) != h.shape:
        raise ValueError(f"labels {np.shape(labels)} and height {h.shape} must have the same shape")
    return h


def gradient_magnitude(height: np.ndarray, cell: float = 1.0) -> np.ndarray:
    """|grad h| by central differences (one-sided at the edges): [H, W] -> [H, W], height units per
    ``cell`` (pass the cell size in metres to get a slope in m/m)."""
    gy, gx = np.gradient(_check(height), cell)
    return np.hypot(gy, gx)


def land_border_distance(labels: np.ndarray) -> np.ndarray:
    """Distance in pixels from every pixel to the nearest border between two land classes ([H, W]
    float; inf when the map has no such border). Water is left out: coasts are not painted borders."""
    from scipy.ndimage import distance_transform_edt

    lab = np.asarray(labels)
    border = np.zeros(lab.shape, bool)
    for a, b, sl_a, sl_b in (
        (lab[1:, :], lab[:-1, :], (slice(1, None), slice(None)), (slice(None, -1), slice(None))),
        (lab[:, 1:], lab[:, :-1], (slice(None), slice(1, None)), (slice(None), slice(None, -1))),
    ):
        edge = (a != b) & (a != WATER) & (b != WATER)
        border[sl_a] |= edge
        border[sl_b] |= edge
    if not border.any():
        return np.full(lab.shape, np.inf)
    return distance_transform_edt(~border)


@dataclass(frozen=True)
class BorderStep:
    """Sums behind the border-step index, so that several maps pool into one figure."""

    near_sum: float = 0.0  # sum of normalised gradient magnitude on land within near_px of a border
    near_n: int = 0
    far_sum: float = 0.0  # ... on land at least far_px from any border
    far_n: int = 0

    def __add__(self, other: BorderStep) -> BorderStep:
        return BorderStep(
            self.near_sum + other.near_sum,
            self.near_n + other.near_n,
            self.far_sum + other.far_sum,
            self.far_n + other.far_n,
        )

    @property
    def index(self) -> float:
        """mean near / mean far; NaN when either side has no pixel or the far relief is zero."""
        if not self.near_n or not self.far_n or self.far_sum <= 0:
            return float("nan")
        return (self.near_sum / self.near_n) / (self.far_sum / self.far_n)


def border_step(
    height: np.ndarray, labels: np.ndarray, *, near_px: float = 3, far_px: float = 8
) -> BorderStep:
    """The sums of :func:`border_step_index` for one map."""
    h = _check(height, labels)
    lab = np.asarray(labels)
    land = lab != WATER
    if land.sum() < 2:
        return BorderStep()
    std = h[land].std()
    g = gradient_magnitude(h / std if std > 0 else h)
    dist = land_border_distance(lab)
    near, far = land & (dist <= near_px), land & (dist >= far_px)
    return BorderStep(float(g[near].sum()), int(near.sum()), float(g[far].sum()), int(far.sum()))


def border_step_index(
    height: np.ndarray, labels: np.ndarray, *, near_px: float = 3, far_px: float = 8
) -> float:
    """Mean height-gradient magnitude within ``near_px`` of a border between two land classes over the
    mean at least ``far_px`` inside a class, land only, heights normalised by their std over land.

    About 1 on real terrain where land cover and relief are unrelated (0.5-1.0 measured on the Earth
    set); a generator that puts a height step at each painted border scores several times that.
    NaN when the map has no land border or no interior.
    """
    return border_step(height, labels, near_px=near_px, far_px=far_px).index


def mean_slope_by_class(
    height: np.ndarray, labels: np.ndarray, num_classes: int, cell: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(sum of |grad h| per class [num_classes], pixels per class [num_classes]): pool over maps, then
    divide. |grad h| is in height units per ``cell``."""
    g = gradient_magnitude(_check(height, labels), cell)
    lab = np.asarray(labels).astype(np.int64).ravel()
    ok = (lab >= 0) & (lab < num_classes)
    sums = np.bincount(lab[ok], weights=g.ravel()[ok], minlength=num_classes)
    counts = np.bincount(lab[ok], minlength=num_classes)
    return sums, counts


def box_blur(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k windows (edge-padded), by cumulative sums: the layout of a map, not its detail."""
    p = np.pad(a, k // 2 + 1, mode="edge").astype(np.float64)
    c = p.cumsum(0).cumsum(1)
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (s / (k * k))[: a.shape[0], : a.shape[1]]


def layout_detail_correlation(heights: list[np.ndarray]) -> tuple[float, float]:
    """(layout, detail) correlation of the same map generated with several seeds.

    Layout: heights smoothed over 1/8 of the map; detail: the rest. Both are the mean Pearson
    correlation of seed 0's map with each other seed's. A model whose noise inputs do something keeps
    the layout (near 1) and changes the detail (well below 1).
    """
    if len(heights) < 2:
        raise ValueError("need the same map generated with at least two seeds")
    hs = [_check(h) for h in heights]
    k = max(3, min(hs[0].shape) // 8) | 1
    lows = [box_blur(h, k) for h in hs]
    highs = [h - lo for h, lo in zip(hs, lows, strict=True)]

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        d = np.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / d) if d > 0 else 1.0

    layout = float(np.mean([corr(lows[0], lo) for lo in lows[1:]]))
    detail = float(np.mean([corr(highs[0], hi) for hi in highs[1:]]))
    return layout, detail
