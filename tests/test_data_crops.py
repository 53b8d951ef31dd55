"""Latitude rescale maths, crop extraction and the region split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.data.crops import CropBox, RegionSplit, WorldMap, extract, resample_columns, source_columns


def test_source_columns_undo_the_equirectangular_stretch():
    assert source_columns(256, 0.0, 1.0, 1.0) == pytest.approx(256)
    assert source_columns(256, 60.0, 1.0, 1.0) == pytest.approx(512)  # cos 60 = 1/2
    assert source_columns(100, -45.0, 0.5, 0.25) == pytest.approx(100 * 2 / math.cos(math.radians(45)))
    with pytest.raises(ValueError, match="pole"):
        source_columns(10, 90.0, 1.0, 1.0)


def cap_world(lat0: float, radius_deg: float, rows=720, cols=1440) -> WorldMap:
    """A global map with one round spot (a spherical cap) at (lat0, 0): round on the ground."""
    lat = np.radians(90 - (np.arange(rows) + 0.5) * 180 / rows)[:, None]
    lon = np.radians(-180 + (np.arange(cols) + 0.5) * 360 / cols)[None]
    la0 = math.radians(lat0)
    cosd = np.sin(lat) * math.sin(la0) + np.cos(lat) * math.cos(la0) * np.cos(lon)
    spot = np.degrees(np.arccos(np.clip(cosd, -1, 1))) < radius_deg
    h = np.where(spot, 1000.0, 0.0).astype(np.float32)
    t = np.where(spot[..., None], 255, 0).astype(np.uint8).repeat(3, -1)
    return WorldMap(t, h, (-90.0, 90.0), 360.0)


def extent(mask: np.ndarray) -> tuple[float, float]:
    """(height, width) of a blob in pixels, from its second moments (robust to jagged edges)."""
    ys, xs = np.nonzero(mask)
    return 4 * ys.std(), 4 * xs.std()


@pytest.mark.parametrize("lat0", [0.0, 45.0, 60.0, -70.0])
def test_a_round_spot_stays_round_after_the_rescale(lat0):
    w = cap_world(lat0, 4.0)
    size = 64
    cols = source_columns(size, lat0, w.dlat, w.dlon)
    row = int(round((90 - lat0) / w.dlat - size / 2))
    col = (180.0 / w.dlon) - cols / 2  # centred on longitude 0
    box = CropBox(row, col, cols, size, lat0, 0.0)
    crop = extract(w, box)
    assert crop["terrain"].shape == (size, size, 3) and crop["height_m"].shape == (size, size)
    hh, ww = extent(crop["height_m"] > 500)
    assert ww / hh == pytest.approx(1.0, abs=0.06), (lat0, ww, hh)
    # Before the rescale, the spot is stretched by 1 / cos(lat) on the map.
    raw_h, raw_w = extent(w.height_m > 500)
    assert raw_w / raw_h == pytest.approx(1 / math.cos(math.radians(lat0)), rel=0.08)


def test_crop_wraps_around_the_dateline():
    w = cap_world(0.0, 5.0)
    # Move the spot onto the dateline.
    w = WorldMap(np.roll(w.terrain, 720, 1), np.roll(w.height_m, 720, 1), w.lat_range, 360.0)
    box = CropBox(360 - 32, 1440 - 32, 64.0, 64, 0.0, 180.0)
    crop = extract(w, box)
    m = crop["height_m"] > 500
    # The spot straddles the dateline in the source and sits whole in the middle of the crop.
    assert np.nonzero(m)[1].mean() == pytest.approx(31.5, abs=1.0) and m[:, 30:34].any(0).all()
    hh, ww = extent(m)
    assert ww / hh == pytest.approx(1.0, abs=0.08)


def test_resample_columns_keeps_a_ramp_and_antialiases():
    a = np.tile(np.arange(100, dtype=np.float32), (3, 1))
    cols = np.linspace(0, 99, 34)
    np.testing.assert_allclose(resample_columns(a, cols)[0, 2:-2], cols[2:-2], atol=0.6)
    # A pixel-scale checkerboard averages out when downscaled 3x (no aliasing into stripes).
    chk = np.tile((np.arange(99) % 2).astype(np.float32), (2, 1))
    out = resample_columns(chk, np.arange(33) * 3 + 1.0)
    assert np.abs(out[:, 2:-2] - 0.5).max() < 0.15


def test_region_split_bands_and_no_straddling():
    land = np.zeros((10, 1000), bool)
    land[:, 100:900] = True
    s = RegionSplit.make(land, 10, 0.2, seed=1)
    assert 1 <= len(s.val_bands) <= 3 and all(0 <= b < 10 for b in s.val_bands)
    assert s == RegionSplit.make(land, 10, 0.2, seed=1)  # seeded
    assert s.band_of(0, 100) == 0 and s.band_of(150, 199.5) == 1
    assert s.band_of(90, 110) is None  # straddles bands 0 and 1
    assert s.band_of(1010, 1090) == 0  # wraps
    assert RegionSplit.make(land, 10, 0.0, seed=1).val_bands == ()
