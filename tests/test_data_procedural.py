"""Procedural world: small-size speed, determinism, sea level, baked NW shading vs albedo, drainage."""

from __future__ import annotations

import time

import numpy as np
import pytest

from terrain_core.outputs import hillshade
from training.data.procedural import WorldParams, flow_accumulation, make_world

SMALL = WorldParams(rows=96, cols=192, erosion_iterations=3)


@pytest.fixture(scope="module")
def world():
    t = time.perf_counter()
    w = make_world(3, SMALL)
    w.build_s = time.perf_counter() - t
    return w


def test_small_world_builds_in_seconds(world):
    assert world.build_s < 10.0, world.timings
    assert world.height_m.shape == (96, 192) and world.terrain.shape == (96, 192, 3)
    assert world.albedo.dtype == np.uint8 and world.terrain.dtype == np.uint8


def test_same_seed_same_world_other_seed_other_world(world):
    again = make_world(3, SMALL)
    assert np.array_equal(again.height_m, world.height_m) and np.array_equal(again.terrain, world.terrain)
    other = make_world(4, SMALL)
    assert not np.array_equal(other.height_m, world.height_m)


def test_sea_level_and_ocean_share(world):
    sea = world.height_m <= 0
    # The continents are thresholded at the requested ocean share (erosion never lowers land below 1 m).
    assert abs(sea.mean() - SMALL.ocean_share) < 0.03
    assert world.height_m.max() > 500 and world.height_m.min() < -500
    # Water is painted blue, land is not.
    t = world.albedo.astype(int)
    blue = (t[..., 2] - t[..., 0] > 25) & (t[..., 2] > t[..., 1])
    lat_ok = np.abs(world.lat)[:, None] < 55  # sea ice near the poles is white, not blue
    assert (blue == sea)[np.broadcast_to(lat_ok, sea.shape)].mean() > 0.95


def test_shading_is_baked_from_the_north_west_and_absent_from_albedo(world):
    land = world.height_m > 0
    sea = ~land
    # Water is flat in both maps.
    assert np.array_equal(world.terrain[sea], world.albedo[sea])
    lum_t = world.terrain.astype(float).mean(-1)
    lum_a = world.albedo.astype(float).mean(-1)
    relief = np.maximum(world.height_m, 0) / SMALL.shade_m_per_px
    nw = hillshade(relief, 1.0, 315.0, gradient="central", dtype=np.float64)
    se = hillshade(relief, 1.0, 135.0, gradient="central", dtype=np.float64)
    diff = (lum_t - lum_a)[land]
    c_nw = np.corrcoef(diff, nw[land])[0, 1]
    c_se = np.corrcoef(diff, se[land])[0, 1]
    assert c_nw > 0.8 and c_se < 0, (c_nw, c_se)
    # The albedo carries no shading: its correlation with the NW shade is far weaker.
    assert abs(np.corrcoef(lum_a[land], nw[land])[0, 1]) < 0.5 * c_nw


def test_flow_accumulation_on_a_known_tree():
    # 0 <- 1 <- 2, 3 -> 1, 4 alone: accumulations 4, 3, 1, 1, 1.
    rec = np.array([0, 0, 1, 1, 4])
    assert flow_accumulation(rec).round().tolist() == [4, 3, 1, 1, 1]


def test_erosion_makes_drainage(world):
    land = world.height_m > 0
    # Rivers: a few cells collect the flow of a large catchment (heavy-tailed accumulation on land).
    f = world.flow[land]
    assert f.max() > 0.01 * land.sum() and np.median(f) < 5


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="at least 16x16"):
        make_world(0, WorldParams(rows=8, cols=8))
    with pytest.raises(ValueError, match="ocean_share"):
        make_world(0, WorldParams(rows=32, cols=64, ocean_share=1.2))
