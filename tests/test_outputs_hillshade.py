"""``terrain_core.outputs.hillshade``'s two gradients against shades worked out by hand.

The Horn gradient serves result previews; the central one the training data's baked-in shading, the
sample grids and the evaluation (``training.samples.auto_hillshade``), whose values it must keep.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrain_core.outputs import hillshade


def plane_shade(dz_east: float, dz_south: float, azimuth_deg: float, altitude_deg: float = 45.0) -> float:
    """The shade of a plane: cosine between its unit normal and the unit vector towards the light."""
    normal = np.array([-dz_east, dz_south, 1.0])  # (east, north, up); north is against the rows
    az, alt = math.radians(azimuth_deg), math.radians(altitude_deg)
    light = np.array([math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt), math.sin(alt)])
    return max(0.0, float(normal @ light / np.linalg.norm(normal)))


@pytest.mark.parametrize("gradient", ["horn", "central"])
@pytest.mark.parametrize("azimuth", [315.0, 135.0, 45.0, 90.0])
def test_a_plane_shades_as_worked_out_with_either_gradient(gradient, azimuth):
    rows, cols = np.mgrid[0:9, 0:12].astype(float)
    cell = 30.0
    height = (0.4 * cols - 0.7 * rows) * cell  # rises 0.4 per cell to the east, falls 0.7 to the south
    shade = hillshade(height, cell, azimuth, gradient=gradient, dtype=np.float64)
    # Central differences are exact on a plane, borders included; Horn's too (edge replication
    # flattens the border cells' outer half, so compare the interior there).
    inner = shade if gradient == "central" else shade[1:-1, 1:-1]
    np.testing.assert_allclose(inner, plane_shade(0.4, -0.7, azimuth), rtol=0, atol=1e-12)


def test_the_gradients_differ_where_the_surface_bends():
    rng = np.random.default_rng(0)
    height = rng.normal(size=(16, 16)) * 50.0
    horn = hillshade(height, 10.0)
    central = hillshade(height, 10.0, gradient="central")
    assert horn.dtype == central.dtype == np.float32
    assert np.abs(horn - central).max() > 0.05  # the option does choose another operator


def test_dtype_and_gradient_are_checked():
    h = np.zeros((4, 4))
    assert hillshade(h, 1.0, dtype=np.float64).dtype == np.float64
    assert hillshade(h, 1.0)[0, 0] == pytest.approx(math.sin(math.radians(45.0)))
    with pytest.raises(ValueError, match="gradient"):
        hillshade(h, 1.0, gradient="sobel")
