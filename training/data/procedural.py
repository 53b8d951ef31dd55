"""A seeded procedural world in the style of the original's data: a global (equirectangular) terrain map with
hypsometric and biome colours and north-west hill-shading baked in, a height map in metres, and the unshaded
ground-truth texture (albedo) the real data cannot give.

Noise lives on the sphere (3-D lattice noise sampled at each pixel's unit vector), so features keep their
true shape and the equirectangular grid stretches them towards the poles exactly as on a real world map:
the builder's latitude rescale then has something real to undo. Pipeline: domain-warped fractal continents,
ridged mountain belts, a few iterations of stream-power incision on the D8 flow accumulation (drainage) with
thermal smoothing, moisture from distance to the sea and latitude bands, colours, shading.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy import ndimage as ndi

from terrain_core.outputs import hillshade

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class WorldParams:
    rows: int = 512  # map height in pixels (the latitude span below)
    cols: int = 1024  # map width in pixels (the longitude span below)
    lat_range: tuple[float, float] = (-75.0, 75.0)  # degrees covered by the rows (south, north)
    lon_span: float = 360.0  # degrees covered by the columns; 360 = the map wraps east-west
    ocean_share: float = 0.62  # fraction of pixels under sea level
    max_height_m: float = 6500.0  # highest peaks (before erosion)
    max_depth_m: float = 5500.0  # deepest ocean
    continent_scale: float = 1.3  # base frequency of the continent noise (per sphere radius)
    mountain_share: float = 0.35  # share of land in mountain belts
    warp: float = 0.35  # domain-warp strength (sphere radii) of the continents
    erosion_iterations: int = 6  # stream-power incision steps (0 = none)
    erosion_rows: int = 384  # erosion runs on a grid of at most this many rows (cost), detail kept
    shade_m_per_px: float = 300.0  # height step per pixel shaded as a 45-degree slope (map-style relief)

    def cell_size_m(self) -> tuple[float, float]:
        """(north-south, east-west at the equator) size of one pixel in metres."""
        dy = math.radians((self.lat_range[1] - self.lat_range[0]) / self.rows) * EARTH_RADIUS_M
        dx = math.radians(self.lon_span / self.cols) * EARTH_RADIUS_M
        return dy, dx


@dataclass
class World:
    params: WorldParams
    seed: int
    height_m: np.ndarray  # [H, W] float32 metres, sea level 0
    albedo: np.ndarray  # [H, W, 3] uint8, colours without shading (ground truth texture)
    terrain: np.ndarray  # [H, W, 3] uint8, albedo with north-west hill-shading baked in
    moisture: np.ndarray  # [H, W] float32 0..1
    temperature: np.ndarray  # [H, W] float32, about -1 (ice) .. 1 (tropics)
    flow: np.ndarray  # [H, W] float32 flow accumulation (cells draining through each cell)
    lat: np.ndarray  # [H] degrees, row centres north to south
    timings: dict = field(default_factory=dict)

    def info(self) -> dict:
        dy, dx = self.params.cell_size_m()
        return {
            "seed": self.seed,
            "params": asdict(self.params),
            "cell_size_m": [dy, dx],
            "height_range_m": [float(self.height_m.min()), float(self.height_m.max())],
        }


# ----------------------------------------------------------------------------------------------- noise
class SphereNoise:
    """Fractal lattice noise over the unit sphere: each octave samples its own random periodic 3-D grid
    (trilinear), randomly rotated so that the lattice axes do not line up between octaves."""

    def __init__(self, rng: np.random.Generator, period: int = 64):
        self.rng = rng
        self.period = period

    def _octave(self, pts: np.ndarray, freq: float) -> np.ndarray:
        """Noise of one octave at points [3, N] (unit sphere, possibly warped); about N(0, 0.5)."""
        grid = self.rng.standard_normal((self.period,) * 3).astype(np.float32)
        q, _ = np.linalg.qr(self.rng.standard_normal((3, 3)))
        off = self.rng.uniform(0, self.period, (3, 1))
        coords = (q @ pts) * freq + off  # [3, N]
        return ndi.map_coordinates(grid, coords, order=1, mode="grid-wrap", prefilter=False)

    def fbm(
        self,
        grid: SphereGrid,
        freq: float,
        octaves: int | None,
        gain: float = 0.5,
        ridged: bool = False,
        warp: np.ndarray | None = None,
    ) -> np.ndarray:
        """Sum of octaves [H, W]; low octaves are sampled on coarser grids and interpolated (cost).

        ``octaves=None``: as many as the resolution shows (down to a wavelength of about 3 pixels).
        """
        out = np.zeros(grid.shape, np.float32)
        amp, total = 1.0, 0.0
        o = 0
        while True:
            f = freq * 2.0**o
            # Pixels per wavelength at full resolution along the equator; sample >= 6 per wavelength.
            px_per_wave = grid.shape[1] / (f * grid.lon_span_rad)
            if (octaves is None and px_per_wave < 3.0 and o > 0) or (octaves is not None and o >= octaves):
                break
            o += 1
            level = int(max(0, min(4, math.floor(math.log2(max(px_per_wave / 6.0, 1.0))))))
            pts = grid.points(level)
            if warp is not None:
                pts = pts + grid.downsample(warp, level)
            v = self._octave(pts.reshape(3, -1), f).reshape(pts.shape[1:])
            if ridged:
                v = 1.0 - 2.0 * np.abs(v)  # sharp crests where the noise crosses zero
            out += amp * grid.upsample(v, level)
            total += amp
            amp *= gain
        return out / total


class SphereGrid:
    """Pixel centres of an equirectangular window as unit vectors, at full and coarser resolutions."""

    def __init__(self, p: WorldParams):
        self.shape = (p.rows, p.cols)
        self.lat_range = p.lat_range
        self.lon_span_rad = math.radians(p.lon_span)
        self.wraps = abs(p.lon_span - 360.0) < 1e-9
        self._cache: dict[int, np.ndarray] = {}

    def latlon(self, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        s, n = self.lat_range
        lat = np.radians(n - (np.arange(rows) + 0.5) * (n - s) / rows)  # north at the top
        lon = -self.lon_span_rad / 2 + (np.arange(cols) + 0.5) * self.lon_span_rad / cols
        return lat, lon

    def level_shape(self, level: int) -> tuple[int, int]:
        return max(2, -(-self.shape[0] // 2**level)), max(2, -(-self.shape[1] // 2**level))

    def points(self, level: int) -> np.ndarray:
        if level not in self._cache:
            lat, lon = self.latlon(*self.level_shape(level))
            la, lo = np.meshgrid(lat, lon, indexing="ij")
            self._cache[level] = np.stack(
                [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]
            ).astype(np.float32)  # [3, h, w]
        return self._cache[level]

    def upsample(self, v: np.ndarray, level: int) -> np.ndarray:
        """[h, w] at ``level`` -> [H, W] (bilinear, pixel centres aligned; wraps east-west if global)."""
        if level == 0:
            return v
        H, W = self.shape
        h, w = v.shape
        y = (np.arange(H) + 0.5) * h / H - 0.5
        x = (np.arange(W) + 0.5) * w / W - 0.5
        pad = 2
        vp = np.pad(v, ((0, 0), (pad, pad)), mode="wrap" if self.wraps else "edge")
        yy, xx = np.meshgrid(y, x + pad, indexing="ij")
        return ndi.map_coordinates(vp, [yy, xx], order=1, mode="nearest").astype(np.float32)

    def downsample(self, v: np.ndarray, level: int) -> np.ndarray:
        """[C, H, W] -> [C, h, w] by area averaging (for warp fields)."""
        if level == 0:
            return v
        h, w = self.level_shape(level)
        zoom = (1, h / v.shape[1], w / v.shape[2])
        return ndi.zoom(v, zoom, order=1, grid_mode=True, mode="grid-wrap")


# --------------------------------------------------------------------------------------------- erosion
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shift(a: np.ndarray, dy: int, dx: int, wraps: bool, fill: float) -> np.ndarray:
    """``a`` seen from the neighbour at (dy, dx): out[y, x] = a[y + dy, x + dx]; outside -> fill."""
    out = np.roll(a, (-dy, -dx), (0, 1))
    if dy == -1:
        out[0] = fill
    elif dy == 1:
        out[-1] = fill
    if not wraps:
        if dx == -1:
            out[:, 0] = fill
        elif dx == 1:
            out[:, -1] = fill
    return out


def flow_receivers(h: np.ndarray, dy_m: float, dx_m: np.ndarray, wraps: bool, sink: np.ndarray):
    """Steepest-descent (D8) receiver index and slope per cell; sinks and pits receive themselves."""
    H, W = h.shape
    idx = np.arange(H * W).reshape(H, W)
    best = np.zeros((H, W), np.float32)
    rec = idx.copy()
    for dy, dx in _NEIGHBOURS:
        dist = np.hypot(dy * dy_m, dx * dx_m)[:, None]  # [H, 1] (east-west spacing shrinks with cos lat)
        s = (h - _shift(h, dy, dx, wraps, np.inf)) / dist
        m = s > best
        best[m] = s[m]
        rec[m] = _shift(idx, dy, dx, wraps, -1)[m]
    rec[sink] = idx[sink]
    best[sink] = 0.0
    return rec.ravel(), best


def flow_accumulation(rec: np.ndarray) -> np.ndarray:
    """Cells draining through each cell: solves (I - A) acc = 1 with A[receiver, donor] = 1.

    The receiver graph is a forest, so the sparse LU has no fill-in: far faster than a Python sweep.
    """
    n = rec.size
    donors = np.flatnonzero(rec != np.arange(n))
    a = sp.csc_matrix((np.ones(donors.size), (rec[donors], donors)), shape=(n, n))
    m = (sp.identity(n, format="csc") - a).tocsc()
    return sla.spsolve(m, np.ones(n), permc_spec="NATURAL")


def erode(h: np.ndarray, p: WorldParams, lat: np.ndarray, iterations: int, rng: np.random.Generator):
    """Stream-power incision (E = K A^0.5 S) plus thermal smoothing, on land only; returns (h, flow)."""
    H, W = h.shape
    dy_m = math.radians((p.lat_range[1] - p.lat_range[0]) / H) * EARTH_RADIUS_M
    dx_m = math.radians(p.lon_span / W) * EARTH_RADIUS_M * np.maximum(np.cos(np.radians(lat)), 0.05)
    wraps = abs(p.lon_span - 360.0) < 1e-9
    h = h.astype(np.float64).copy()
    sea = h <= 0
    acc = np.ones(H * W)
    # Incision is scaled so the biggest rivers cut a valley of about 1/8 of the relief per step.
    for _ in range(iterations):
        # A little jitter keeps flat plateaus from draining in grid-aligned parallel lines.
        hj = h + rng.normal(0, 1.0, h.shape) * (~sea)
        rec, slope = flow_receivers(hj, dy_m, dx_m, wraps, sea)
        acc = flow_accumulation(rec)
        a = acc.reshape(H, W)
        power = np.sqrt(a) * slope
        k = 0.125 * max(float(h.max()), 1.0) / max(float(np.quantile(power[~sea], 0.999)), 1e-9)
        cut = np.minimum(k * power, np.maximum(h - h.ravel()[rec].reshape(H, W), 0) * 0.9)
        h = np.where(sea, h, h - cut)
        # Thermal: material slides off slopes steeper than the talus angle (a damped diffusion).
        lap = ndi.uniform_filter(h, 3, mode="wrap" if wraps else "nearest") - h
        h = np.where(sea, h, np.maximum(h + 0.25 * lap, 1.0))
    return h, acc.reshape(H, W)


# ---------------------------------------------------------------------------------------------- colour
# Hypsometric ramps in the spirit of Natural Earth shaded relief: (height m, RGB) knots, humid and arid.
HUMID = [(0, (120, 168, 118)), (300, (148, 184, 128)), (900, (196, 196, 150)), (1800, (200, 168, 136)),
         (3000, (176, 150, 136)), (4500, (206, 200, 198)), (6500, (238, 238, 240))]  # fmt: skip
ARID = [(0, (222, 204, 160)), (400, (226, 196, 156)), (1200, (214, 176, 140)), (2200, (196, 150, 120)),
        (3500, (184, 160, 146)), (5000, (214, 208, 204)), (6500, (238, 238, 240))]  # fmt: skip
ICE = np.array([236, 240, 246], np.float32)
TUNDRA = np.array([190, 190, 176], np.float32)
DEEP = np.array([96, 146, 194], np.float32)
SHALLOW = np.array([160, 200, 226], np.float32)


def _ramp(h: np.ndarray, knots) -> np.ndarray:
    hs = np.array([k[0] for k in knots], np.float32)
    cs = np.array([k[1] for k in knots], np.float32)
    return np.stack([np.interp(h, hs, cs[:, c]) for c in range(3)], -1)


def colour(h: np.ndarray, moisture: np.ndarray, temp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unshaded albedo [H, W, 3] float 0..255 from height (m), moisture 0..1 and temperature."""
    land = h > 0
    m = np.clip((moisture - 0.3) / 0.35, 0, 1)[..., None]
    c = _ramp(h, HUMID) * m + _ramp(h, ARID) * (1 - m)
    cold = np.clip((0.05 - temp) / 0.35, 0, 1)[..., None]
    c = c * (1 - cold) + TUNDRA * cold
    ice = np.clip((-0.35 - temp) / 0.2, 0, 1)[..., None]
    c = c * (1 - ice) + ICE * ice
    depth = np.clip(-h / 1500.0, 0, 1)[..., None] ** 0.5
    water = SHALLOW * (1 - depth) + DEEP * depth
    water = water * (1 - ice) + ICE * ice  # sea ice
    return np.where(land[..., None], c, water)


def bake_shading(albedo: np.ndarray, h: np.ndarray, p: WorldParams) -> np.ndarray:
    """Terrain map: albedo darkened/lightened by north-west hill-shading on land; water stays flat."""
    # Shaded on the map grid, as map makers do: a step of shade_m_per_px between pixels is 45 degrees.
    s = hillshade(np.maximum(h, 0) / p.shade_m_per_px, 1.0, gradient="central", dtype=np.float64)
    flat = math.sin(math.radians(45.0))  # shade of level ground: factor 1 there
    f = np.where(h > 0, 1.0 + 0.9 * (s - flat), 1.0)[..., None]
    return np.clip(albedo * f + 12.0 * np.clip(f - 1.0, 0, None), 0, 255)


# ---------------------------------------------------------------------------------------------- world
def make_world(seed: int = 0, params: WorldParams | None = None) -> World:
    """Build a world from ``seed`` (same seed + params = same world, bit for bit).

    One random generator feeds the steps in this order (continents, relief, erosion, climate; colour takes
    it but draws nothing), so the order of the steps is part of what a seed means."""
    import time

    p = params or WorldParams()
    check_world_params(p)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    grid = SphereGrid(p)
    noise = SphereNoise(rng)
    lat = np.degrees(grid.latlon(p.rows, p.cols)[0])
    timings = {}
    warp = np.stack([noise.fbm(grid, p.continent_scale * 1.5, 3) for _ in range(3)]) * p.warp  # [3, H, W]
    coast = continents(noise, grid, p, warp)
    timings["continents_s"] = time.perf_counter() - t0
    h = relief(noise, grid, p, coast, warp)
    timings["relief_s"] = time.perf_counter() - t0 - sum(timings.values())
    flow = np.ones_like(h)
    if p.erosion_iterations > 0:
        t1 = time.perf_counter()
        h, flow = erode_within_budget(h, p, lat, rng)
        timings["erosion_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    moist, temp = climate(noise, grid, p, h, lat)
    albedo = colour(h, moist, temp, rng)
    terrain = bake_shading(albedo, h, p)
    timings["colour_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    return World(
        params=p,
        seed=int(seed),
        height_m=h.astype(np.float32),
        albedo=np.round(albedo).astype(np.uint8),
        terrain=np.round(terrain).astype(np.uint8),
        moisture=moist,
        temperature=temp,
        flow=flow.astype(np.float32),
        lat=lat.astype(np.float32),
        timings=timings,
    )


def check_world_params(p: WorldParams) -> None:
    if p.rows < 16 or p.cols < 16:
        raise ValueError(f"world must be at least 16x16 pixels, got {p.rows}x{p.cols}")
    if not -90 <= p.lat_range[0] < p.lat_range[1] <= 90:
        raise ValueError(f"lat_range must be increasing within -90..90, got {p.lat_range}")
    if not 0 < p.lon_span <= 360:
        raise ValueError(f"lon_span must be in (0, 360], got {p.lon_span}")
    if not 0 < p.ocean_share < 1:
        raise ValueError(f"ocean_share must be in (0, 1), got {p.ocean_share}")


def continents(noise: SphereNoise, grid: SphereGrid, p: WorldParams, warp: np.ndarray) -> np.ndarray:
    """Domain-warped fbm minus its ocean-share quantile: [H, W], > 0 on land."""
    cont = noise.fbm(grid, p.continent_scale, None, gain=0.55, warp=warp)
    return cont - float(np.quantile(cont, p.ocean_share))


def relief(
    noise: SphereNoise, grid: SphereGrid, p: WorldParams, coast: np.ndarray, warp: np.ndarray
) -> np.ndarray:
    """Heights [H, W] float64 in metres: ridged mountain belts where a belt noise is high, rolling hills
    and plateaus elsewhere, all growing inland from the coast; the sea floor deepens offshore."""
    f = p.continent_scale
    land_scale = float(np.quantile(coast[coast > 0], 0.95)) if (coast > 0).any() else 1.0
    sea_scale = float(-np.quantile(coast[coast < 0], 0.05)) if (coast < 0).any() else 1.0
    belt = noise.fbm(grid, f * 2.0, 3, warp=warp * 0.5)
    bt = float(np.quantile(belt[coast > 0], 1 - p.mountain_share)) if (coast > 0).any() else 0.0
    belt_mask = np.clip((belt - bt) / 0.12 + 0.5, 0, 1) ** 2
    ridges = noise.fbm(grid, f * 6.0, None, gain=0.55, ridged=True, warp=warp * 0.3)
    ridges = np.clip((ridges - ridges.mean()) / (3 * ridges.std()) + 0.4, 0, 1) ** 1.3
    hills = noise.fbm(grid, f * 8.0, None, gain=0.6, warp=warp * 0.2)
    hills = np.clip(hills / (3 * hills.std()) + 0.5, 0, 1)
    base = np.clip(coast / land_scale, 0, 1.5) ** 0.8
    # Uplands: a second, broad noise lifts plateaus away from the belts (highland class material).
    plateau = np.clip(noise.fbm(grid, f * 1.5, 4) * 3.0, 0, 1)
    # Coastal lowlands: relief grows inland over a width that itself varies (30..400 km): broad plains
    # in places, steep coasts in others.
    dy_m, dx_eq = p.cell_size_m()
    coast_km = ndi.distance_transform_edt(coast > 0, sampling=(dy_m / 1000, dx_eq / 1000))
    width_km = 30.0 + 370.0 * np.clip(noise.fbm(grid, f * 3.0, 3) * 2.0 + 0.5, 0, 1)
    ramp = np.clip(coast_km / width_km, 0, 1) ** 0.8
    land_h = (
        0.06 * base * ramp
        + 0.18 * plateau * base * ramp
        + 0.10 * hills * (0.3 + 0.7 * ramp)
        + 0.75 * belt_mask * ridges * ramp
    )
    land_h = land_h * p.max_height_m
    sea_h = -p.max_depth_m * np.clip(-coast / sea_scale, 0, 1) ** 0.6
    return np.where(coast > 0, np.maximum(land_h, 2.0), np.minimum(sea_h, -2.0)).astype(np.float64)


def erode_within_budget(
    h: np.ndarray, p: WorldParams, lat: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``erode`` on a grid of at most ``p.erosion_rows`` rows; the change it makes is carried back to full
    resolution. Returns (heights, flow accumulation) at full resolution."""
    s = max(1, math.ceil(p.rows / p.erosion_rows))
    small = h if s == 1 else ndi.zoom(h, 1 / s, order=1, grid_mode=True, mode="nearest")
    lat_small = (
        lat if s == 1 else np.interp(np.linspace(0, p.rows - 1, small.shape[0]), np.arange(p.rows), lat)
    )
    eroded, flow_small = erode(small, p, lat_small, p.erosion_iterations, rng)
    if s == 1:
        return eroded, flow_small
    zoom = (p.rows / small.shape[0], p.cols / small.shape[1])
    delta = ndi.zoom(eroded - small, zoom, order=1, grid_mode=True, mode="nearest")
    h = np.where(h > 0, np.maximum(h + delta[: p.rows, : p.cols], 1.0), h)
    flow = ndi.zoom(flow_small, zoom, order=1, grid_mode=True, mode="nearest")[: p.rows, : p.cols] * s * s
    return h, flow


def climate(
    noise: SphereNoise, grid: SphereGrid, p: WorldParams, h: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Moisture [H, W] 0..1 from distance to the sea, latitude bands and noise; temperature [H, W]
    (about -1 ice .. 1 tropics) from latitude and height (lapse rate). Both float32."""
    f = p.continent_scale
    dy_m, dx_eq = p.cell_size_m()
    dist_km = ndi.distance_transform_edt(h > 0, sampling=(dy_m / 1000, dx_eq / 1000))
    a = np.abs(lat)[:, None]
    bands = 0.55 + 0.35 * np.cos(np.radians(a) * 4.0) * np.exp(-((a / 70.0) ** 4))  # wet 0/55, dry 28
    moist = bands * np.exp(-dist_km / 2500.0) + 0.6 * noise.fbm(grid, f * 3, 5)
    moist += 0.15 * np.exp(-dist_km / 250.0)
    moist = np.clip(moist, 0, 1).astype(np.float32)
    temp = np.cos(np.radians(a)) * 1.6 - 0.75 - np.maximum(h, 0) / 3500.0 + 0.1 * noise.fbm(grid, f * 3, 3)
    return moist, temp.astype(np.float32)
