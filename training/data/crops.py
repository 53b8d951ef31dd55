"""Crops of an equirectangular world map: latitude rescale, featureless-crop rejection, region split.

Latitude rescale: on an equirectangular map one pixel spans ``dlat`` degrees north-south but only
``dlon * cos(lat)`` degrees' worth of ground east-west, so features are stretched horizontally by
``1 / cos(lat)``. A crop of S x S output pixels with square ground pixels therefore reads
``S * dlat / (dlon * cos(lat))`` source columns around its centre and resamples them to S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class WorldMap:
    terrain: np.ndarray  # [H, W, 3] uint8 shaded terrain map
    height_m: np.ndarray  # [H, W] float32 metres above sea level
    lat_range: tuple[float, float]  # degrees covered by the rows (south, north); row 0 is north
    lon_span: float  # degrees covered by the columns (360 = global, wraps)
    albedo: np.ndarray | None = None  # [H, W, 3] uint8 unshaded texture (procedural only)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height_m.shape

    @property
    def wraps(self) -> bool:
        return abs(self.lon_span - 360.0) < 1e-6

    @property
    def dlat(self) -> float:
        return (self.lat_range[1] - self.lat_range[0]) / self.shape[0]

    @property
    def dlon(self) -> float:
        return self.lon_span / self.shape[1]

    def row_lat(self, row: float) -> float:
        """Latitude (degrees) of a (fractional) row position; row 0.5 is the first row's centre."""
        return self.lat_range[1] - row * self.dlat


def source_columns(size: int, lat_deg: float, dlat: float, dlon: float) -> float:
    """Source columns that hold ``size`` ground-square pixels at latitude ``lat_deg``."""
    c = math.cos(math.radians(lat_deg))
    if c <= 1e-6:
        raise ValueError(f"latitude {lat_deg} is at a pole; no crop can be rescaled there")
    return size * dlat / (dlon * c)


def resample_columns(a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample ``a`` [H, W(, C)] at fractional column positions ``cols`` [S] (linear), after an anti-alias
    blur matched to the column step (for a downscale by k: gaussian sigma about 0.4 k)."""
    step = float(np.median(np.diff(cols))) if len(cols) > 1 else 1.0
    src = a.astype(np.float32)
    if step > 1.2:
        sig = [0.0] * src.ndim
        sig[1] = 0.42 * step
        src = ndi.gaussian_filter(src, sig, mode="nearest")
    x0 = np.floor(cols).astype(int)
    t = (cols - x0).astype(np.float32)
    x0 = np.clip(x0, 0, a.shape[1] - 1)
    x1 = np.clip(x0 + 1, 0, a.shape[1] - 1)
    shape = (1, -1) + (1,) * (src.ndim - 2)
    return src[:, x0] * (1 - t.reshape(shape)) + src[:, x1] * t.reshape(shape)


@dataclass(frozen=True)
class CropBox:
    row: int  # first source row
    col: float  # first source column (fractional; may exceed the map width on a wrapping map)
    cols: float  # source columns read (before the rescale to ``size``)
    size: int  # output side in pixels
    lat: float  # latitude of the centre, degrees
    lon: float  # longitude of the centre, degrees (-180..180 on a global map)

    def col_range(self) -> tuple[float, float]:
        return self.col, self.col + self.cols


def extract(world: WorldMap, box: CropBox, margin: int = 0) -> dict[str, np.ndarray]:
    """The crop (plus ``margin`` output pixels on every side) with the latitude rescale applied."""
    S, m = box.size, margin
    H, W = world.shape
    step = box.cols / S
    cols = box.col + (np.arange(-m, S + m) + 0.5) * step - 0.5  # output pixel centres in source columns
    r0, r1 = box.row - m, box.row + S + m
    rows = np.clip(np.arange(r0, r1), 0, H - 1)
    lo = int(math.floor(cols.min())) - int(2 * step) - 2
    hi = int(math.ceil(cols.max())) + int(2 * step) + 3
    src_cols = np.arange(lo, hi)
    src_cols = np.mod(src_cols, W) if world.wraps else np.clip(src_cols, 0, W - 1)
    out = {}
    for name in ("terrain", "height_m", "albedo"):
        a = getattr(world, name)
        if a is None:
            continue
        win = a[rows][:, src_cols]
        r = resample_columns(win, cols - lo)
        out[name] = np.clip(np.round(r), 0, 255).astype(np.uint8) if a.dtype == np.uint8 else r
    return out


def is_featureful(height_m: np.ndarray, terrain: np.ndarray, min_land: float, min_relief_m: float) -> bool:
    """Not (mostly) empty ocean and not perfectly flat: the original's 'meaningful features' selection."""
    land = height_m > 0
    if land.mean() < min_land:
        return False
    relief = float(np.percentile(height_m[land], 95) - np.percentile(height_m[land], 5)) if land.any() else 0
    colour_sd = float(terrain[..., :3].reshape(-1, 3).std(0).mean())
    return relief >= min_relief_m or colour_sd >= 12.0


@dataclass(frozen=True)
class RegionSplit:
    """Longitude bands; a crop belongs to the band holding its whole window, val bands are fixed by seed.

    Crops that would straddle two bands are not drawn, so no training crop shares a pixel with a
    validation crop (bands are whole source columns and never overlap).
    """

    n_bands: int
    val_bands: tuple[int, ...]
    width: int  # map columns

    @classmethod
    def make(cls, land: np.ndarray, n_bands: int, val_share: float, seed: int) -> RegionSplit:
        """Bands in a seeded random order join the validation split until they hold ``val_share`` of
        the land (land [H, W] bool: crops need land, so land is what the split must share out)."""
        width = land.shape[1]
        if val_share <= 0:
            return cls(n_bands, (), width)
        rng = np.random.default_rng([seed, 0x5EED])
        edges = np.linspace(0, width, n_bands + 1).round().astype(int)
        per_band = np.array([land[:, a:b].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)], float)
        per_band /= max(per_band.sum(), 1.0)
        val, got = [], 0.0
        for b in rng.permutation(n_bands):
            if got >= val_share or len(val) >= n_bands - 1:
                break
            # Skip a band that would overshoot by more than it helps (keeps the val share near the target).
            if val and got + per_band[b] > 2 * val_share:
                continue
            val.append(int(b))
            got += per_band[b]
        return cls(n_bands, tuple(sorted(val)), width)

    def band_of(self, col0: float, col1: float) -> int | None:
        """Band index holding source columns [col0, col1) (mod width), or None when it straddles."""
        bw = self.width / self.n_bands
        a = math.floor((col0 % self.width) / bw)
        b = math.floor(((col1 - 1e-6) % self.width) / bw)
        span = col1 - col0
        return a if a == b and span <= bw else None

    def split_of(self, band: int) -> str:
        return "val" if band in self.val_bands else "train"


def draw_boxes(
    world: WorldMap,
    count: int,
    size: int,
    rng: np.random.Generator,
    split: RegionSplit,
    max_abs_lat: float = 70.0,
    margin: int = 0,
):
    """Yield candidate (box, band) pairs forever: uniform over the sphere's area within ``max_abs_lat``
    (so high latitudes are not over-sampled), and fully inside one split band."""
    H, W = world.shape
    lat_lo = max(world.lat_range[0] + (size / 2 + margin + 1) * world.dlat, -max_abs_lat)
    lat_hi = min(world.lat_range[1] - (size / 2 + margin + 1) * world.dlat, max_abs_lat)
    if lat_lo >= lat_hi:
        raise ValueError(
            f"the map ({H} rows over {world.lat_range}) is too small for crops of {size} px "
            f"within +-{max_abs_lat} degrees latitude; use a smaller --size"
        )
    s_lo, s_hi = math.sin(math.radians(lat_lo)), math.sin(math.radians(lat_hi))
    misses = 0
    while True:
        misses += 1
        if misses > 20000:
            raise ValueError(
                f"no crop of {size} px fits inside one of the {split.n_bands} split bands "
                f"({W / split.n_bands:.0f} columns each); use fewer --bands or a smaller --size"
            )
        lat = math.degrees(math.asin(rng.uniform(s_lo, s_hi)))
        cols = source_columns(size, lat, world.dlat, world.dlon)
        if cols + 2 * margin * cols / size > W:
            continue
        centre_row = (world.lat_range[1] - lat) / world.dlat
        row = int(round(centre_row - size / 2))
        row = min(max(row, margin), H - size - margin)
        if world.wraps:
            col = rng.uniform(0, W)
        else:
            col = rng.uniform(margin * cols / size, W - cols - margin * cols / size)
        band = split.band_of(col, col + cols)
        if band is None:
            continue
        lat_c = world.row_lat(row + size / 2)
        lon_c = -world.lon_span / 2 + ((col + cols / 2) % W) * world.dlon
        misses = 0
        yield CropBox(row, float(col), float(cols), size, float(lat_c), float(lon_c)), band
