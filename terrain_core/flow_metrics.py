"""Drainage realism of any height map: closed depressions and the drainage-area distribution.

    m = flow_metrics(height_m, labels, cell_size_m=30.0)   # labels optional (water = outlets)
    m["closed_depression_share"], m["drainage_tau"]

- **Closed-depression share**: the share of land pixels that lie in a closed depression deeper than
  ``min_depth_m`` (their water would stand there with every depression filled to spilling). Real land
  drains: apart from lakes, karst and dunes it has few; a generator that paints relief without water has
  many.
- **Drainage-area exponent tau**: the slope of the complementary distribution P(A >= a) ~ a^-tau of the
  drainage area A over land pixels, fitted in log-log between ``a_min_cells`` and ``a_max_share`` of the
  land pixels. Real river networks give tau about 0.4-0.5 (Rodriguez-Iturbe & Rinaldo, "Fractal River
  Basins"); parallel, undissected slopes give a steeper fall-off (larger tau).

Both use ``terrain_core.flow`` (numpy only). Outlets: water pixels (class 0) and the map edge.
"""

from __future__ import annotations

import numpy as np

from terrain_core import flow

A_MIN_CELLS = 10.0  # lower end of the tau fit: below it, the hillslope scale, not the network
A_MAX_SHARE = 0.01  # upper end: a share of the land pixels, where a map's few big rivers make it noisy
MIN_DEPTH_M = 1.0  # depressions shallower than this do not count (16-bit heights step ~0.1 m)


def _outlets(shape: tuple[int, int], labels: np.ndarray | None) -> np.ndarray:
    out = flow.edge_mask(shape)
    if labels is not None:
        out |= np.asarray(labels) == 0
    return out


def drainage_tau(
    area_cells: np.ndarray,
    land: np.ndarray,
    a_min_cells: float = A_MIN_CELLS,
    a_max_share: float = A_MAX_SHARE,
) -> float | None:
    """tau of P(A >= a) ~ a^-tau over land pixels, fitted for a in [a_min_cells, a_max_share * land];
    None when the range holds fewer than 4 distinct sample points (a tiny or all-water map)."""
    a = np.asarray(area_cells, dtype=np.float64)[land]
    if a.size == 0:
        return None
    a_max = a_max_share * a.size
    if a_max <= a_min_cells * 4:
        return None
    grid = np.geomspace(a_min_cells, a_max, 16)
    a_sorted = np.sort(a)
    ccdf = 1.0 - np.searchsorted(a_sorted, grid, side="left") / a.size  # P(A >= a)
    ok = ccdf > 0
    if ok.sum() < 4:
        return None
    slope = np.polyfit(np.log(grid[ok]), np.log(ccdf[ok]), 1)[0]
    return float(-slope)


def flow_metrics(
    height_m: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    cell_size_m: float = 30.0,
    min_depth_m: float = MIN_DEPTH_M,
) -> dict[str, float | None]:
    """Closed-depression share and drainage tau of ``height_m`` [H, W] (metres)."""
    z = np.asarray(height_m, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 3:
        raise ValueError(f"height must be a 2-D map of at least 3x3 pixels, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("height contains NaN or infinite values")
    outlet = _outlets(z.shape, labels)
    r = flow.route(z, outlet, cell_size_m)
    land = ~outlet.reshape(-1)
    depth = r.fill_depth(z.reshape(-1))
    area = flow.FlowTree(r.receiver).accumulate(np.ones(z.size))
    share = float((depth[land] > min_depth_m).mean()) if land.any() else None
    return {
        "closed_depression_share": share,
        "drainage_tau": drainage_tau(area, land),
        "land_pixels": int(land.sum()),
    }
