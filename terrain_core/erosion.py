"""Erosion after the generator: water-cut valleys, softened slopes, and the masks artists texture with.

    eroded = erode(height_m, labels, strength="medium", cell_size_m=30.0, seed=0)
    eroded.height_m, eroded.flow, eroded.deposition, eroded.wear

Numpy only, so that it runs inside Blender (no scipy there). First a seeded roughness (zero net volume,
scaled by the local drop per cell) tilts the flow on the generator's smooth slopes, so that incision grows
branching valleys instead of parallel rills. Then each step:

1. Flow routing (``terrain_core.flow``): steepest descent (D8); closed depressions spill over their
   lowest pass, so every drop reaches an outlet. Outlets are the base level: water pixels (class 0) and the
   map edge (the map is a window of a larger land).
2. Talus: where a slope is steeper than loose rock stands, part of the excess slides to the receiver.
3. Fluvial incision: stream power E = K A^m S with n = 1, solved implicitly for all nodes at once
   (Braun & Willett 2013), K from the painted class (strong on mountains and hills, moderate on highland,
   light on plains, desert and forest) times a seeded, smooth rock-hardness field.
4. Sediment: what the rivers carry drops out in proportion to G * (cell area / drainage area), less on
   steep ground (Davy & Lague's xi-q idea): on valley floors, fans and plains. What reaches a depression
   fills it from the bottom up to its spill level, the rest spills on. What reaches an outlet leaves.
5. Hillslope diffusion, explicit and conservative; what diffuses into water leaves.

Water pixels never change. Every cubic metre is accounted for: eroded = deposited + outflow (the
``balance`` of the result), to rounding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from terrain_core import flow
from terrain_core.labels import LabelMapError, check_labels
from terrain_core.noise import check_seed

LEVELS = ("off", "light", "medium", "strong")
WATER = 0
MIN_SIDE = 3

# Per class (terrain_core.labels order: water, plains, forest, hills, desert, mountains, highland).
ERODIBILITY = (0.0, 0.25, 0.2, 0.9, 0.3, 1.0, 0.55)  # multiplies K (fluvial) and, floored, the diffusivity
TALUS_DEG = (90.0, 33.0, 33.0, 38.0, 32.0, 42.0, 36.0)  # steepest slope loose rock holds, degrees


class ErosionError(ValueError):
    """Bad erosion input or settings; the message is one line that says what to change."""


class ErosionCancelled(Exception):
    """The caller's ``cancel`` callback asked to stop; nothing was returned."""


@dataclass(frozen=True)
class ErosionSettings:
    """One erosion level. Per-step values; the whole run applies them ``steps`` times."""

    steps: int  # erosion steps; 0 = off
    fluvial_k: float  # stream-power K * dt per step at erodibility 1, m^(1 - 2m) (E = K A^m S, A in m^2)
    area_exponent: float = 0.5  # m in K A^m S (n = 1)
    deposition_g: float = 1.0  # share of passing sediment a one-cell catchment drops (xi-q's G); 0 = none
    deposition_slope: float = 0.05  # slope (m/m) at which that share halves
    # hillslope diffusivity * dt / cell^2 per step at erodibility 1 (in cell areas, so that the same level
    # does the same at any cell size); 0 = none
    diffusion: float = 0.05
    talus_rate: float = 0.4  # share of the over-steep excess that slides per step; 0 = no talus
    hardness_variation: float = 0.5  # spread (log) of the seeded rock-hardness field; 0 = uniform
    hardness_scale_px: int = 12  # size of its features, pixels
    # seeded fine-scale roughness (metres, zero net volume on land) added before the first step, so that
    # flow on the generator's smooth slopes converges somewhere and incision can grow branching channels
    roughness_m: float = 0.0  # (where the ground drops at least 5 cm per cell)
    roughness_slope: float = 0.0  # plus this share of the local drop per cell (steers flow, few pits)
    roughness_px: int = 2  # size of its features, pixels

    def __post_init__(self):
        if self.steps < 0 or self.fluvial_k < 0 or self.diffusion < 0 or self.deposition_g < 0:
            raise ErosionError("erosion settings must not be negative")
        if not 0 <= self.talus_rate <= 0.5:
            raise ErosionError(f"talus_rate must be in 0..0.5, got {self.talus_rate}")


# Calibrated on the default model's output at 30 m cells against 32 Earth validation maps and by looking at
# hill-shades beside real ones (docs/EROSION.md): the seeded roughness steers the flow on the generator's
# smooth slopes so that incision grows branching valleys; little talus and creep, so that slopes sharpen
# rather than soften.
_SHAPED = {
    "diffusion": 0.01,
    "talus_rate": 0.15,
    "roughness_slope": 2.0,
    "roughness_m": 0.5,
    "roughness_px": 3,
}
PRESETS: dict[str, ErosionSettings] = {
    "off": ErosionSettings(steps=0, fluvial_k=0.0),
    "light": ErosionSettings(
        steps=5, fluvial_k=1.2e-2, **{**_SHAPED, "roughness_slope": 1.0, "roughness_m": 0.3}
    ),
    "medium": ErosionSettings(steps=12, fluvial_k=2.0e-2, **_SHAPED),
    "strong": ErosionSettings(
        steps=20, fluvial_k=3.0e-2, **{**_SHAPED, "diffusion": 0.015, "talus_rate": 0.2}
    ),
}


def settings_for(strength: str | float, iterations: int | None = None) -> ErosionSettings:
    """The settings of a named level, or ``medium``'s with K and diffusion scaled by a number (1 = medium)."""
    if isinstance(strength, str):
        if strength not in PRESETS:
            raise ErosionError(f"unknown erosion level {strength!r}; use one of {', '.join(LEVELS)}")
        s = PRESETS[strength]
    else:
        try:
            k = float(strength)
        except (TypeError, ValueError):
            raise ErosionError(
                f"erosion strength must be a level name or a number, got {strength!r}"
            ) from None
        if not (math.isfinite(k) and 0.0 <= k <= 10.0):
            raise ErosionError(f"erosion strength must be in 0..10 (1 = medium), got {strength!r}")
        m = PRESETS["medium"]
        s = replace(m, fluvial_k=m.fluvial_k * k, diffusion=m.diffusion * k, steps=m.steps if k else 0)
    if iterations is not None:
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, (int, np.integer))
            or not (0 <= iterations <= 1000)
        ):
            raise ErosionError(f"erosion iterations must be an integer in 0..1000, got {iterations!r}")
        s = replace(s, steps=int(iterations))
    return s


@dataclass
class Eroded:
    """What ``erode`` returns: [H, W] float32 arrays and the mass balance."""

    height_m: np.ndarray  # eroded height, metres
    flow: np.ndarray  # drainage area of the final surface, m^2 (rivers: large values)
    deposition: np.ndarray  # metres the ground rose (sediment, talus, creep); 0 where it fell
    wear: np.ndarray  # metres the ground fell (incision, talus, creep); 0 where it rose
    balance: dict[str, float] = field(default_factory=dict)  # eroded_m3, deposited_m3, outflow_m3
    settings: dict = field(default_factory=dict)  # the settings used, for meta.json
    seconds: float = 0.0


def _smooth_noise(shape: tuple[int, int], seed: int, scale_px: int) -> np.ndarray:
    """[H, W] float64 standard normal noise on a grid every ``scale_px`` pixels, bilinearly upsampled
    (separable), so it is smooth and the same for the same seed and size."""
    h, w = shape
    rng = np.random.Generator(np.random.PCG64(seed))
    gh, gw = h // max(scale_px, 1) + 2, w // max(scale_px, 1) + 2
    coarse = rng.standard_normal((gh, gw))
    ys = np.linspace(0, gh - 1.001, h)
    xs = np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def hardness_field(shape: tuple[int, int], seed: int, variation: float, scale_px: int = 48) -> np.ndarray:
    """[H, W] float64 multiplier exp(variation * smooth noise), mean about 1; smooth over ``scale_px``."""
    if variation == 0.0:
        return np.ones(shape)
    f = _smooth_noise(shape, int(seed) + 0x5EED, scale_px)
    f /= max(float(f.std()), 1e-9)
    return np.exp(variation * (f - f.mean()))


def _roughness(shape: tuple[int, int], seed: int, scale_px: int, water: np.ndarray) -> np.ndarray:
    """[N] float64 seeded noise of unit std over ``scale_px`` pixels, 0 on water, summing to 0 on land."""
    f = _smooth_noise(shape, int(seed) + 0xC4A7, scale_px).reshape(-1)
    f[water] = 0.0
    land = ~water
    if land.any():
        f[land] -= f[land].mean()
        f /= max(float(f[land].std()), 1e-9)
    return f


def check_inputs(height_m: np.ndarray, labels: np.ndarray, cell_size_m: float) -> None:
    h = np.asarray(height_m)
    if h.ndim != 2:
        raise ErosionError(f"height must be 2-D [H, W], got shape {h.shape}")
    if min(h.shape) < MIN_SIDE:
        raise ErosionError(f"height map must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {h.shape}")
    if not np.issubdtype(h.dtype, np.floating) and not np.issubdtype(h.dtype, np.integer):
        raise ErosionError(f"height must be numbers, got dtype {h.dtype}")
    if not np.isfinite(h).all():
        raise ErosionError("height contains NaN or infinite values")
    try:
        check_labels(labels)
    except LabelMapError as e:
        raise ErosionError(str(e)) from None
    if np.asarray(labels).shape != h.shape:
        raise ErosionError(f"class map {np.asarray(labels).shape} and height {h.shape} differ in size")
    if not (isinstance(cell_size_m, (int, float)) and math.isfinite(cell_size_m) and cell_size_m > 0):
        raise ErosionError(f"cell size must be a positive number of metres, got {cell_size_m!r}")


def erode(
    height_m: np.ndarray,
    labels: np.ndarray,
    *,
    strength: str | float = "medium",
    iterations: int | None = None,
    cell_size_m: float = 30.0,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Eroded:
    """Erode ``height_m`` [H, W] (metres) painted with ``labels`` [H, W] (class ids 0..6).

    ``strength``: a level of ``LEVELS`` or a number (1 = medium). ``iterations`` overrides the level's
    steps. ``seed`` draws the rock-hardness field: the same inputs and seed give the same result.
    ``progress(fraction)`` is called after each step; ``cancel()`` returning True raises
    ``ErosionCancelled``. Raises ``ErosionError`` on bad input.
    """
    t0 = time.perf_counter()
    check_inputs(height_m, labels, cell_size_m)
    settings = settings_for(strength, iterations)
    try:
        seed = check_seed(seed)  # the generator's seed range: erosion takes the same seed
    except ValueError as e:
        raise ErosionError(str(e)) from None
    lab = np.asarray(labels).astype(np.uint8, copy=False)
    z_start = np.asarray(height_m).reshape(-1)  # the caller's array, read only
    z = z_start.astype(np.float64)
    grid = _Grid.of(lab, float(cell_size_m))
    if settings.steps and (settings.roughness_m > 0 or settings.roughness_slope > 0):
        z += _roughness_bump(z, grid, settings, seed)
    meta = {"level": strength if isinstance(strength, str) else float(strength), **asdict(settings)}
    rates = _Rates.of(lab, grid, settings, seed)
    outflow = _Outflow()  # m^3 that left through outlets (water and the map edge)
    for step in range(settings.steps):
        if cancel is not None and cancel():
            raise ErosionCancelled("erosion cancelled")
        z = _erosion_step(z, grid, rates, settings, outflow)
        if progress is not None:
            progress((step + 1) / settings.steps)
    return _result(z, z_start, grid, outflow.m3, meta, t0)


@dataclass(frozen=True)
class _Grid:
    """The frame of one run: the grid, its cell size and where material leaves the map."""

    shape: tuple[int, int]
    cell: float  # metres between neighbouring pixels
    water: np.ndarray  # [N] bool, class 0: never changes
    outlet: np.ndarray  # [N] bool, water or the map edge: the base level

    @classmethod
    def of(cls, lab: np.ndarray, cell: float) -> _Grid:
        water = (lab == WATER).reshape(-1)
        return cls(lab.shape, cell, water, water | flow.edge_mask(lab.shape).reshape(-1))

    @property
    def area(self) -> float:  # m^2 per cell
        return self.cell * self.cell

    @property
    def n(self) -> int:
        return self.water.size


@dataclass(frozen=True)
class _Rates:
    """Per-node constants of a run, float32: at 4096^2 every 8-byte array is 128 MiB of the 2 GiB budget."""

    k_node: np.ndarray  # [N] stream-power K * dt per step (class erodibility times rock hardness)
    kappa: np.ndarray  # [N] hillslope diffusivity * dt, m^2; 0 on water
    tan_talus: np.ndarray  # [N] steepest slope loose rock holds, m/m

    @classmethod
    def of(cls, lab: np.ndarray, grid: _Grid, settings: ErosionSettings, seed: int) -> _Rates:
        erod_class = np.asarray(ERODIBILITY)[lab].reshape(-1)
        hard = hardness_field(grid.shape, int(seed), settings.hardness_variation, settings.hardness_scale_px)
        k_node = (settings.fluvial_k * erod_class * hard.reshape(-1)).astype(np.float32)
        del hard
        kappa = (settings.diffusion * grid.area * np.maximum(erod_class, 0.3)).astype(np.float32)  # m^2
        kappa[grid.water] = 0.0
        tan_talus = np.tan(np.radians(np.asarray(TALUS_DEG, dtype=np.float32)))[lab].reshape(-1)
        return cls(k_node, kappa, tan_talus)


@dataclass
class _Outflow:
    """The m^3 that left the map so far, added up in the order it leaves (the mass balance's third term)."""

    m3: float = 0.0

    def add(self, m3: float) -> None:
        self.m3 += m3


def _roughness_bump(z: np.ndarray, grid: _Grid, settings: ErosionSettings, seed: int) -> np.ndarray:
    """[N] metres of seeded roughness to add before the first step: scaled by the local drop per cell, zero
    on water, zero net volume, and keeping the surface within its lowest and highest point."""
    water = grid.water
    gy, gx = np.gradient(z.reshape(grid.shape).astype(np.float32))  # float32: memory on large maps
    g = np.hypot(gy, gx).reshape(-1)  # metres per cell
    del gy, gx
    # Level ground (a flat map, a lake's sediment floor) gets none: the roughness follows the relief.
    amp = settings.roughness_m * np.minimum(g / 0.05, 1.0) + settings.roughness_slope * g
    del g
    bump = _roughness(grid.shape, int(seed), settings.roughness_px, water) * amp
    bump[water] = 0.0
    land = ~water
    if land.any():
        bump[land] -= bump[land].mean()  # no volume made or lost
        # never below the map's lowest point nor above its highest (the height range stays the
        # caller's); what a bound adds or takes comes off the other side, so the sum stays 0
        np.maximum(bump, float(z.min()) - z, out=bump)
        up = bump > 0
        extra, top = float(bump.sum()), float(bump[up].sum())
        if extra > 0 and top > 0:
            bump[up] *= 1.0 - extra / top
        np.minimum(bump, float(z.max()) - z, out=bump)  # nor above its highest
        down = bump < 0
        short, bottom = float(bump.sum()), float(bump[down].sum())
        if short < 0 and bottom < 0:
            bump[down] *= 1.0 - short / bottom
    return bump


def _erosion_step(
    z: np.ndarray, grid: _Grid, rates: _Rates, settings: ErosionSettings, outflow: _Outflow
) -> np.ndarray:
    """One step (module docstring 1-5): route, talus, incision and sediment, diffusion; the new heights."""
    routing = flow.route(z.reshape(grid.shape), grid.outlet.reshape(grid.shape), grid.cell)
    tree = flow.FlowTree(routing.receiver)
    if settings.talus_rate > 0:
        _slide_talus(z, routing, rates.tan_talus, settings.talus_rate, grid, outflow)
    z = _incise_and_deposit(z, routing, tree, rates.k_node, settings, grid, outflow)
    if settings.diffusion > 0:
        z, gone = _diffuse(z, grid.shape, rates.kappa, grid.cell, grid.water)
        outflow.add(gone * grid.area)
    return z


def _slide_talus(
    z: np.ndarray, routing: flow.Routing, tan_talus: np.ndarray, rate: float, grid: _Grid, outflow: _Outflow
) -> None:
    """2. Talus, in place: over-steep excess slides one cell downhill (into water: it leaves)."""
    rcv = routing.receiver
    excess = (z - z[rcv]) - tan_talus * routing.distance
    move = np.where((excess > 0) & ~grid.outlet, rate * excess, 0.0)
    del excess
    z -= move
    gain = np.bincount(rcv, weights=move, minlength=grid.n)
    outflow.add(float(gain[grid.water].sum()) * grid.area)
    gain[grid.water] = 0.0
    z += gain


def _incise_and_deposit(
    z: np.ndarray,
    routing: flow.Routing,
    tree: flow.FlowTree,
    k_node: np.ndarray,
    settings: ErosionSettings,
    grid: _Grid,
    outflow: _Outflow,
) -> np.ndarray:
    """3. Fluvial incision, then 4. sediment: what the rivers set loose drops out on low slopes and small
    catchments; depressions trap it and fill from the bottom; outlets pass it out of the map."""
    n, area = grid.n, grid.area
    drainage = tree.accumulate(np.full(n, area))
    lake = routing.lake_mask(z)
    z, source = _incise(z, routing, tree, drainage, lake, k_node, settings.area_exponent, grid)
    drop_share = _drop_share(z, routing, drainage, lake, settings, grid)
    del drainage
    for attempt in range(3):
        if attempt == 2:
            # What still spills from a chain of full depressions runs on, dropping nothing, to the
            # outlets: every tree ends in one, so all of it leaves (no routing needed to count it).
            outflow.add(float(source.sum()))
            break
        arriving = tree.accumulate(source, np.subtract(1.0, drop_share, dtype=np.float32))
        outflow.add(float(arriving[grid.outlet].sum()))
        laid = drop_share * arriving
        del arriving
        trapped = np.where(lake, laid, 0.0)
        laid[lake] = 0.0
        z += laid / area
        del laid
        if not trapped.any():
            break
        add, spilled = _fill_depressions(z, routing, lake, trapped, area)
        z += add
        del add, trapped
        if spilled.sum() <= 0:
            break
        source = np.zeros(n)
        np.add.at(source, routing.spill[1:, 1], spilled[1:])
        was_lake, lake = lake, routing.lake_mask(z)
        drop_share[was_lake & ~lake] = 0.0  # a filled depression passes sediment on
        del was_lake
    return z


def _incise(
    z: np.ndarray,
    routing: flow.Routing,
    tree: flow.FlowTree,
    drainage: np.ndarray,
    lake: np.ndarray,
    k_node: np.ndarray,
    area_exponent: float,
    grid: _Grid,
) -> tuple[np.ndarray, np.ndarray]:
    """Stream-power incision, implicit: z_i' = (z_i + F z_r') / (1 + F), F = K A^m / distance.

    Returns the new heights and the m^3 set loose per node."""
    rcv, dist = routing.receiver, routing.distance
    f = np.zeros(grid.n)
    ok = ~grid.outlet & ~lake & (z[rcv] < z) & (dist > 0)
    f[ok] = k_node[ok] * drainage[ok] ** area_exponent / dist[ok]
    del ok
    f += 1.0  # solve z' = z / (1 + F) + F / (1 + F) * z'_receiver, in the arrays the solver works in
    a = z / f
    b = f - 1.0
    b /= f
    del f
    z_new = tree.solve_in_place(a, b)
    del a, b
    np.minimum(z_new, z, out=z_new)  # rounding only: incision never raises
    return z_new, (z - z_new) * grid.area


def _drop_share(
    z: np.ndarray,
    routing: flow.Routing,
    drainage: np.ndarray,
    lake: np.ndarray,
    settings: ErosionSettings,
    grid: _Grid,
) -> np.ndarray:
    """[N] float32 share of the passing sediment each node keeps: G * cell area / drainage area, less on
    steep ground (xi-q); all of it in a depression, none at an outlet."""
    if settings.deposition_g > 0:
        dist = routing.distance
        slope = np.where(dist > 0, (z - z[routing.receiver]) / np.maximum(dist, 1e-9), 0.0)
        drop_share = (settings.deposition_g * grid.area / drainage).astype(np.float32)
        drop_share /= 1.0 + np.maximum(slope, 0.0) / settings.deposition_slope
        np.clip(drop_share, 0.0, 1.0, out=drop_share)
        del slope
    else:
        drop_share = np.zeros(grid.n, np.float32)
    drop_share[lake] = 1.0
    drop_share[grid.outlet] = 0.0
    return drop_share


def _result(
    z: np.ndarray, z_start: np.ndarray, grid: _Grid, outflow_m3: float, meta: dict, t0: float
) -> Eroded:
    """The eroded surface, the drainage of its final shape, the change masks and the mass balance."""
    shape, area = grid.shape, grid.area
    z_out = z.reshape(shape)
    drainage = flow.drainage_area(z_out, grid.outlet.reshape(shape), grid.cell)  # of the final surface
    change = (z - z_start).astype(np.float32)
    wear = np.maximum(-change, np.float32(0.0))
    deposit = np.maximum(change, np.float32(0.0))
    del change
    eroded_m3 = float(wear.sum(dtype=np.float64)) * area
    deposited_m3 = float(deposit.sum(dtype=np.float64)) * area
    balance = {"eroded_m3": eroded_m3, "deposited_m3": deposited_m3, "outflow_m3": outflow_m3}
    return Eroded(
        height_m=z_out.astype(np.float32),
        flow=drainage.astype(np.float32),
        deposition=deposit.reshape(shape),
        wear=wear.reshape(shape),
        balance=balance,
        settings=meta,
        seconds=time.perf_counter() - t0,
    )


def _fill_depressions(
    z: np.ndarray, routing: flow.Routing, lake: np.ndarray, trapped: np.ndarray, area: float
) -> tuple[np.ndarray, np.ndarray]:
    """Spread the sediment trapped in each depression (m^3 per node) flat from its bottom up.

    Returns the height added per node (m) and, per basin, the volume (m^3) that did not fit below the
    spill level and spills on.
    """
    idx = np.flatnonzero(lake)
    nb = len(routing.lake_level)
    b = routing.basin[idx].astype(np.int64)
    zz = z[idx]
    volume = np.bincount(routing.basin, weights=trapped, minlength=nb)
    capacity = np.bincount(b, weights=routing.lake_level[b] - zz, minlength=nb) * area
    fill = np.minimum(volume, capacity) / area  # metres x cells
    order = np.lexsort((zz, b))
    bs, zs = b[order], zz[order]
    starts = np.searchsorted(bs, np.arange(nb))
    csum = np.cumsum(zs)
    before = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0.0)
    k = np.arange(len(bs)) - starts[bs] + 1
    need = k * zs - (csum - before[bs])  # to raise the k lowest nodes to the k-th height
    fits = need <= fill[bs] * (1 + 1e-12) + 1e-12
    kb = np.bincount(bs, weights=fits, minlength=nb)
    zsum = np.bincount(bs, weights=zs * fits, minlength=nb)
    level = np.where(kb > 0, (fill + zsum) / np.maximum(kb, 1), -np.inf)
    add = np.zeros(len(z))
    add[idx] = np.maximum(level[b] - zz, 0.0)
    # Rounding can leave the spread a hair over the volume: scale it back so no volume is made up.
    laid = np.bincount(b, weights=add[idx], minlength=nb) * area
    over = laid > volume
    if over.any():
        scale = np.where(over, volume / np.maximum(laid, 1e-300), 1.0)
        add[idx] *= scale[b]
        laid = np.bincount(b, weights=add[idx], minlength=nb) * area
    excess = np.maximum(volume - laid, 0.0)
    excess[0] = 0.0
    return add, excess


def _diffuse(
    z: np.ndarray,
    shape: tuple[int, int],
    kappa: np.ndarray,
    cell: float,
    water: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Linear hillslope diffusion for one step; returns the new heights and metres x cells lost to water."""
    h, w = shape
    kmax = float(kappa.max()) if kappa.size else 0.0
    if kmax <= 0:
        return z, 0.0
    subs = max(1, math.ceil(kmax / (0.2 * cell * cell)))
    c = 1.0 / (subs * cell * cell)
    z2 = z.reshape(shape)  # in place: z is the caller's working copy
    k2 = kappa.reshape(shape)
    w2 = water.reshape(shape)
    c = np.float32(c)
    kx = np.minimum(k2[:, 1:], k2[:, :-1]) * c  # faces between columns; 0 next to water's own kappa
    ky = np.minimum(k2[1:], k2[:-1]) * c
    # A face touching water carries material into the water only (water never feeds land).
    kx_w = np.maximum(k2[:, 1:], k2[:, :-1]) * c
    ky_w = np.maximum(k2[1:], k2[:-1]) * c
    wx = w2[:, 1:] ^ w2[:, :-1]
    wy = w2[1:] ^ w2[:-1]
    kx[wx] = kx_w[wx]
    ky[wy] = ky_w[wy]
    del kx_w, ky_w, wx, wy
    both_x = w2[:, 1:] & w2[:, :-1]
    both_y = w2[1:] & w2[:-1]
    kx[both_x] = 0.0
    ky[both_y] = 0.0
    gone = 0.0
    for _ in range(subs):
        fx = kx * (z2[:, :-1] - z2[:, 1:])  # flow to the right (m)
        fy = ky * (z2[:-1] - z2[1:])  # flow downward in rows
        # water never gives: zero the faces where the source side is water
        fx[(fx > 0) & w2[:, :-1]] = 0.0
        fx[(fx < 0) & w2[:, 1:]] = 0.0
        fy[(fy > 0) & w2[:-1]] = 0.0
        fy[(fy < 0) & w2[1:]] = 0.0
        dz = np.zeros(shape)
        np.negative(fx, out=dz[:, :-1])
        dz[:, 1:] += fx
        dz[:-1] -= fy
        dz[1:] += fy
        gone += float(dz[w2].sum())
        dz[w2] = 0.0
        z2 += dz
    return z2.reshape(-1), gone


# ------------------------------------------------------------------------------------------------ outputs


def mask_images(eroded: Eroded) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The three masks as [H, W] float32 in 0..1 (for 16-bit PNGs) and how to read them back (meta.json).

    flow: log drainage area, 0 = one cell, 1 = the largest catchment of the map (rivers bright);
    deposition and wear: metres divided by the map's largest value (its ``scale_m``).
    """
    cells = np.maximum(eroded.flow.astype(np.float64) / max(float(eroded.flow.min()), 1e-12), 1.0)
    log_max = float(np.log(cells.max()))
    flow01 = (np.log(cells) / log_max if log_max > 0 else np.zeros_like(cells)).astype(np.float32)
    images = {"flow.png": flow01}
    info: dict[str, dict] = {
        "flow.png": {
            "encoding": "uint16 v; drainage area in cells = exp(v / 65535 * log_area_max)",
            "log_area_max": log_max,
        }
    }
    for name, arr in (("deposition.png", eroded.deposition), ("wear.png", eroded.wear)):
        scale = float(arr.max())
        images[name] = (arr / scale if scale > 0 else np.zeros_like(arr)).astype(np.float32)
        info[name] = {"encoding": "uint16 v; metres = v / 65535 * scale_m", "scale_m": scale}
    return images, info


def eroded_result(result, eroded: Eroded):
    """A copy of a ``TerrainResult`` with the eroded height (normalised with the result's own range)."""
    lo, hi = result.height_range_m
    norm = 2.0 * (eroded.height_m.astype(np.float64) - lo) / (hi - lo) - 1.0
    timings = {**result.timings, "erosion": eroded.seconds}
    return replace(result, height=norm.astype(np.float32), timings=timings)
