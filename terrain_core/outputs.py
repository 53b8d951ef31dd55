"""Height maps, textures, splat masks and meshes from a generation, written without Blender.

numpy and zlib only: the image files are written by ``terrain_core.rasterfiles`` in row blocks (no Pillow,
no GDAL: Blender's Python has neither), so writing adds buffers of a block, not copies of the map. No
scipy either, for the same reason.

File names are fixed (other tools rely on them): ``texture.png`` (flat RGB), ``terrain.png`` (the shaded
preview), ``height.png`` (16-bit), ``height.tif`` (32-bit float metres, GeoTIFF cell size and origin),
``height.raw`` (16-bit little-endian, Unity's layout; only when asked), ``splat_0.png`` / ``splat_1.png``,
``terrain.obj`` + ``terrain.mtl``, ``meta.json``.

Height grids: the height files (and the mesh) are on the pixels by default; on the (H + 1) x (W + 1)
pixel corners with ``plus_one``; with ``engine`` on the corner grid of the engine's recommended size
(``ENGINE_SIZES``, resampled bilinearly), with the cell size adjusted so that the extent stays W x H
pixels' worth of metres. Textures and splat masks always stay at the pixel size.

Mesh by size: maps up to ``MESH_FULL_MAX_SIDE`` pixels per side get a mesh of every sample; larger maps a
mesh of every n-th sample, n the smallest keeping it within ``MESH_VERTEX_BUDGET`` vertices
(``obj_step=None``; an explicit ``obj_step`` wins). Game engines build their own meshes from height maps;
a full-resolution OBJ of a 4096 map is 16.7 M vertices and about 2.5 GB that nobody opens.

Conventions
- Image row 0 is north, column 0 is west; the light of the data (and of ``hillshade``) comes from the
  north-west, the upper-left of the image.
- Meshes: ``terrain_core.objmesh`` (axes, uv and OBJ text conventions).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core import rasterfiles
from terrain_core.labels import CLASS_NAMES, NUM_CLASSES, check_labels, class_shares
from terrain_core.objmesh import DEFAULT_CELL_SIZE_M, grid_indices, write_obj
from terrain_core.output_set import OutputPathError, OutputSet
from terrain_core.rasterfiles import Rows, array_rows, corner_rows
from terrain_core.result import TerrainResult, to_uint8

# --format names, in writing order (meta last: it lists the others).
FORMATS: tuple[str, ...] = ("texture", "terrain", "height16", "heightf", "raw16", "splat", "obj", "meta")
# Written when no format is named: everything but the engine-only raw heights.
DEFAULT_FORMATS: tuple[str, ...] = tuple(f for f in FORMATS if f != "raw16")
FILES: dict[str, tuple[str, ...]] = {
    "texture": ("texture.png",),
    "terrain": ("terrain.png",),
    "height16": ("height.png",),
    "heightf": ("height.tif",),
    "raw16": ("height.raw",),
    "splat": ("splat_0.png", "splat_1.png"),
    "obj": ("terrain.obj", "terrain.mtl"),
    "meta": ("meta.json",),
}
# Splat masks get this much Gaussian softening (sigma, pixels) so that engine terrain layers blend instead
# of stepping at class borders; 0 keeps hard one-pixel borders.
SPLAT_SOFTEN_PX = 1.0
# Splat channel layout: classes 0-3 in splat_0 RGBA, 4-6 in splat_1 RGB, splat_1 alpha a spare 0.
SPLAT_CHANNELS: dict[str, tuple[str | None, ...]] = {
    "splat_0.png": CLASS_NAMES[0:4],
    "splat_1.png": (*CLASS_NAMES[4:7], None),
}
META_VERSION = 1
# Height-map sizes (samples per side, corner grid) the engines recommend. Unity: square 2^n + 1. Unreal:
# the sizes of its landscape guide (whole components of 63 to 254 quads), per side.
ENGINE_SIZES: dict[str, tuple[int, ...]] = {
    "unity": (33, 65, 129, 257, 513, 1025, 2049, 4097),
    "unreal": (127, 253, 505, 1009, 2017, 4033, 8129),
}
# Maps up to this many pixels per side get the full mesh by default; larger ones a reduced one.
MESH_FULL_MAX_SIDE = 1024
# Vertex budget of the reduced mesh: what a 1024 map's full plus-one mesh has (1.05 M vertices).
MESH_VERTEX_BUDGET = 1025 * 1025


class ExportError(RuntimeError):
    """Writing the outputs failed; nothing was left half-written. The message says why."""


# --------------------------------------------------------------------------------------------------------
# Height helpers


def hillshade(
    height_m: np.ndarray,
    cell_size_m: float,
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
    *,
    gradient: str = "horn",
    dtype: type = np.float32,
) -> np.ndarray:
    """Lambertian hill-shading [H, W] in 0..1 of a height map in metres (float32 unless ``dtype`` says).

    ``azimuth_deg`` is the compass direction the light comes from (0 = north = up in the image, 90 = east,
    315 = north-west = upper-left); ``altitude_deg`` its angle above the horizon. A flat plane gets
    sin(altitude). ``gradient``: "horn", Horn's weighted 3x3 differences over edge-replicated borders (the
    smoother one, for previews of results); "central", numpy's central differences, one-sided at the
    borders (what the training data's baked-in shading and the evaluation's shade use).
    """
    h = np.asarray(height_m, dtype=np.float64)
    if h.ndim != 2 or h.size == 0:
        raise ValueError(f"height must be a non-empty [H, W] array, got shape {h.shape}")
    if not cell_size_m > 0:
        raise ValueError(f"cell_size_m must be positive, got {cell_size_m}")
    if gradient == "horn":
        east, south = _horn_gradient(h, cell_size_m)
    elif gradient == "central":
        south, east = np.gradient(h, axis=0) / cell_size_m, np.gradient(h, axis=1) / cell_size_m
    else:
        raise ValueError(f"gradient must be 'horn' or 'central', got {gradient!r}")
    north = -south
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    # Unit vector towards the light in (east, north, up); the surface normal is (-dz/de, -dz/dn, 1)/|.|.
    lx, ly, lz = np.sin(az) * np.cos(alt), np.cos(az) * np.cos(alt), np.sin(alt)
    shade = (-east * lx - north * ly + lz) / np.sqrt(east**2 + north**2 + 1.0)
    return np.clip(shade, 0.0, 1.0).astype(dtype)


def _horn_gradient(h: np.ndarray, cell_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(d/d east, d/d south) of ``h`` [H, W] by Horn's 3x3 weighted differences, borders edge-replicated
    (rows go south, columns go east)."""
    p = np.pad(h, 1, mode="edge")
    east = ((p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])) / (
        8.0 * cell_size_m
    )
    south = ((p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])) / (
        8.0 * cell_size_m
    )
    return east, south


def plus_one_resample(img: np.ndarray) -> np.ndarray:
    """Resample [H, W] or [H, W, C] pixels to (H + 1) x (W + 1) samples on the pixel corners (bilinear).

    Corner (i, j) lies between pixel centres i - 1 and i (j - 1 and j): interior corners average their four
    pixels, border corners take the edge pixels. Used for the "2^n + 1" height grids of game engines.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected [H, W] or [H, W, C], got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    p = np.concatenate([a[:1], a, a[-1:]], axis=0)
    p = np.concatenate([p[:, :1], p, p[:, -1:]], axis=1)  # [H + 2, W + 2(, C)]
    return 0.25 * (p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:])


def height_to_uint16(height_norm: np.ndarray) -> np.ndarray:
    """The training data's 16-bit encoding of a normalised height in -1..1: round((h + 1) * 32767.5)."""
    h = np.asarray(height_norm, dtype=np.float64)
    if not np.isfinite(h).all():
        raise ValueError("height contains NaN or infinite values")
    return np.rint((np.clip(h, -1.0, 1.0) + 1.0) * 32767.5).astype(np.uint16)


# --------------------------------------------------------------------------------------------------------
# Image writers (terrain_core.rasterfiles, in row blocks)


# zlib level of the colour and splat PNGs (Pillow's default).
_PNG_LEVEL = 6


def _metres(lo: float, hi: float):
    """Normalised -1..1 height rows -> float32 metres (the arithmetic of ``TerrainResult.height_m``)."""
    return lambda h: (lo + (h + 1.0) * 0.5 * (hi - lo)).astype(np.float32)


def _checked_2d(a: np.ndarray, what: str = "height") -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{what} must be [H, W], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return a


def write_height_png16(path: str | Path, height_norm: np.ndarray | Rows) -> Path:
    """16-bit grayscale PNG of a normalised height [H, W] in -1..1 (uint16 = round((h + 1) * 32767.5))."""
    rows = height_norm if isinstance(height_norm, Rows) else array_rows(_checked_2d(height_norm))
    # zlib level 1: 16-bit heights hardly compress better at higher levels but save twice as slowly.
    return rasterfiles.write_png(path, Rows(rows.height, rows.width, _u16(rows.block)), level=1)


def _u16(block):
    return lambda r0, r1: height_to_uint16(block(r0, r1))


def write_height_tiff(
    path: str | Path,
    height_m: np.ndarray | Rows,
    cell_size_m: float | tuple[float, float] = DEFAULT_CELL_SIZE_M,
    origin_m: tuple[float, float] | None = None,
) -> Path:
    """32-bit float GeoTIFF of a height map [H, W] in metres, with its cell size (x, y) and the origin
    (x, y) of its upper-left corner (default: centred on 0, 0, as the OBJ mesh); no CRS."""
    rows = height_m if isinstance(height_m, Rows) else array_rows(_checked_2d(height_m))
    cx, cy = (cell_size_m, cell_size_m) if np.isscalar(cell_size_m) else cell_size_m
    if origin_m is None:
        origin_m = (-rows.width * cx / 2.0, rows.height * cy / 2.0)
    return rasterfiles.write_geotiff(path, rows, cell_size=(cx, cy), origin=origin_m)


def write_texture_png(path: str | Path, rgb: np.ndarray) -> Path:
    """RGB PNG from [H, W, 3] uint8 (or float 0..1) pixels, converted a block at a time."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"texture must be [H, W, 3], got shape {a.shape}")
    conv = (lambda b: b[..., :3]) if a.dtype == np.uint8 else (lambda b: to_uint8(b[..., :3]))
    rows = array_rows(a, conv)
    return rasterfiles.write_png(path, Rows(rows.height, rows.width, rows.block, 3), level=_PNG_LEVEL)


def write_height_raw16(path: str | Path, height_norm: np.ndarray | Rows) -> Path:
    """Unity's RAW height: little-endian uint16 (height.png's encoding), the southern row first."""
    rows = height_norm if isinstance(height_norm, Rows) else array_rows(_checked_2d(height_norm))
    return rasterfiles.write_raw16(path, Rows(rows.height, rows.width, _u16(rows.block)), bottom_up=True)


# --------------------------------------------------------------------------------------------------------
# Splat masks


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [H, W] float32 with edge-replicated borders, in plain numpy."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    h, w = x.shape
    tmp = np.empty((h, w), dtype=np.float32)
    p = np.pad(x, ((r, r), (0, 0)), mode="edge")
    y = p[0:h] * k[0]
    for i in range(1, 2 * r + 1):  # accumulate in place: no temporary per tap beyond one buffer
        y += np.multiply(p[i : i + h], k[i], out=tmp)
    p = np.pad(y, ((0, 0), (r, r)), mode="edge")
    y = p[:, 0:w] * k[0]
    for i in range(1, 2 * r + 1):
        y += np.multiply(p[:, i : i + w], k[i], out=tmp)
    return y


def splat_masks(
    labels: np.ndarray, soften_px: float = 0.0, *, block_pixels: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class weights as two RGBA uint8 images [H, W, 4] (splat_0: classes 0-3; splat_1: 4-6 + spare 0).

    The 8 weights of every pixel sum to exactly 255 (largest-remainder rounding). ``soften_px`` > 0 blurs
    the class masks with a Gaussian of that sigma first, for soft transitions between terrain layers.
    Works in row blocks of about ``block_pixels`` (with a halo for the blur), so memory stays bounded
    on large maps; the result does not depend on the block size.
    """
    lab = np.asarray(labels)
    check_labels(lab)
    h, w = lab.shape
    s0 = np.empty((h, w, 4), dtype=np.uint8)
    s1 = np.empty((h, w, 4), dtype=np.uint8)
    for y0, y1, out in _splat_blocks(lab, soften_px, block_pixels):
        s0[y0:y1], s1[y0:y1] = out[..., :4], out[..., 4:]
    return s0, s1


def _splat_blocks(lab: np.ndarray, soften_px: float, block_pixels: int):
    """(first row, end row, [rows, W, 8] uint8 weights) over the map, with a halo for the blur."""
    h, w = lab.shape
    halo = int(np.ceil(3.0 * soften_px)) if soften_px > 0 else 0
    rows = max(1, block_pixels // w)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        a, b = max(0, y0 - halo), min(h, y1 + halo)  # the halo rows feed the blur and are dropped
        yield y0, y1, _splat_block(lab[a:b], soften_px)[y0 - a : y1 - a]


def write_splat_pngs(
    path0: str | Path, path1: str | Path, labels: np.ndarray, soften_px: float = SPLAT_SOFTEN_PX
) -> tuple[Path, Path]:
    """``splat_masks`` written straight into two RGBA PNGs, a block at a time (no whole-map masks)."""
    lab = np.asarray(labels)
    check_labels(lab)
    h, w = lab.shape
    pngs = [rasterfiles.PngStream(p, w, h, 4, _PNG_LEVEL) for p in (path0, path1)]
    try:
        for _y0, _y1, out in _splat_blocks(lab, soften_px, 1 << 18):
            pngs[0].add(out[..., :4])
            pngs[1].add(out[..., 4:])
    except BaseException:
        for png in pngs:
            png.f.close()
        raise
    return pngs[0].close(), pngs[1].close()


def _splat_block(lab: np.ndarray, soften_px: float) -> np.ndarray:
    """[H, W, 8] uint8 weights of one block (channels first inside, so every operation is contiguous)."""
    h, w = lab.shape
    weights = np.zeros((8, h, w), dtype=np.float32)  # [8, H, W]; channel 7 is the spare
    for c in range(NUM_CLASSES):
        m = lab == c
        if not m.any():
            continue
        weights[c] = _gaussian_blur(m.astype(np.float32), float(soften_px)) if soften_px > 0 else m
    weights *= 255.0 / np.maximum(weights.sum(0), 1e-12)
    out = np.floor(weights).astype(np.int16)
    # Hand the units lost to flooring to the channels with the largest remainders, so that sums are
    # exactly 255. Only pixels near class borders are mixed; the rest already sum to 255.
    missing = (255 - out.sum(0)).ravel()  # [H * W], 0..7
    mixed = np.nonzero(missing)[0]
    if mixed.size:
        flat = out.reshape(8, -1)
        rem = (weights.reshape(8, -1)[:, mixed] - flat[:, mixed]).astype(np.float32)  # [8, k]
        order = np.argsort(-rem, axis=0, kind="stable")  # [8, k] channels by remainder, largest first
        miss = missing[mixed]
        for j in range(7):
            sel = np.nonzero(miss > j)[0]
            if not sel.size:
                break
            flat[order[j, sel], mixed[sel]] += 1
    return out.astype(np.uint8).transpose(1, 2, 0)


# --------------------------------------------------------------------------------------------------------
# Everything at once, atomically


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """Format names from "texture,obj", an iterable or None (the defaults), in writing order; "all" is
    every format. ValueError if unknown."""
    if formats is None:
        return DEFAULT_FORMATS
    names = [s.strip() for s in formats.split(",")] if isinstance(formats, str) else [str(s) for s in formats]
    names = [n for n in names if n]
    if "all" in names:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)} (or all)")
    if not names:
        raise ValueError(f"no format given; choose from {', '.join(FORMATS)} (or all)")
    return tuple(n for n in FORMATS if n in names)


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def _check_result(result: TerrainResult) -> tuple[int, int]:
    h, w = np.asarray(result.height).shape[:2]
    if np.asarray(result.height).ndim != 2 or h < 2 or w < 2:
        raise ValueError(f"result.height must be [H, W] with H, W >= 2, got {np.shape(result.height)}")
    for name in ("texture", "shaded"):
        a = np.asarray(getattr(result, name))
        if a.shape != (h, w, 3):
            raise ValueError(f"result.{name} must be [{h}, {w}, 3], got {a.shape}")
    if np.asarray(result.labels).shape != (h, w):
        raise ValueError(f"result.labels must be [{h}, {w}], got {np.shape(result.labels)}")
    if not np.isfinite(result.height).all():
        raise ValueError("result.height contains NaN or infinite values")
    lo, hi = result.height_range_m
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"result.height_range_m must be finite with hi > lo, got {result.height_range_m}")
    return h, w


def engine_grid(engine: str, width: int, height: int) -> tuple[int, int]:
    """(samples across, samples down) of ``engine``'s recommended height map for a W x H pixel map: the
    listed size nearest to W + 1 (H + 1) in ratio, ties to the larger. Unity's are square (its longer side
    decides), Unreal's per side."""
    sizes = ENGINE_SIZES[engine]

    def nearest(n: int) -> int:
        return min(sizes, key=lambda s: (abs(np.log(s / (n + 1))), -s))

    if engine == "unity":
        n = nearest(max(width, height))
        return n, n
    return nearest(width), nearest(height)


def mesh_step(rows_n: int, cols_n: int, budget: int | None = None) -> int:
    """The mesh step by size: 1 (every sample) up to ``MESH_FULL_MAX_SIDE`` pixels per side (plus one, for
    corner grids), else the smallest step whose mesh has at most ``budget`` (``MESH_VERTEX_BUDGET``)
    vertices."""
    budget = MESH_VERTEX_BUDGET if budget is None else budget
    if max(rows_n, cols_n) <= MESH_FULL_MAX_SIDE + 1:
        return 1
    step = 1
    while len(grid_indices(rows_n, step)) * len(grid_indices(cols_n, step)) > budget:
        step += 1
    return step


def _then(block, f):
    return lambda r0, r1: f(block(r0, r1))


def _pixel_metres(result: TerrainResult, plus_one: bool) -> Rows:
    h, w = result.size
    m = _metres(*result.height_range_m)
    return corner_rows(result.height, h + 1, w + 1, m) if plus_one else array_rows(result.height, m)


def height_grid(
    result: TerrainResult, cell: float, *, plus_one: bool = False, engine: str | None = None
) -> dict[str, Any]:
    """Where the height files' samples lie: normalised rows, sample counts, cell size (x, y) in metres and
    the layout. The extent stays W x H pixels of ``cell`` metres: corner grids of n samples per side span
    it with n - 1 cells."""
    h, w = result.size
    if engine is not None:
        nw, nh = engine_grid(engine, w, h)
        layout = "corners"
    elif plus_one:
        nw, nh, layout = w + 1, h + 1, "corners"
    else:
        nw, nh, layout = w, h, "pixels"
    if layout == "pixels":
        rows, cells = array_rows(result.height), (cell, cell)
    else:
        rows, cells = corner_rows(result.height, nh, nw), (w * cell / (nw - 1), h * cell / (nh - 1))
    return {"rows": rows, "size": [nw, nh], "cell_size_m": cells, "layout": layout, "engine": engine}


def write_outputs(
    result: TerrainResult,
    out_dir: str | Path | OutputSet,
    formats: str | Iterable[str] | None = DEFAULT_FORMATS,
    *,
    plus_one: bool = False,
    engine: str | None = None,
    size_m: float | None = None,
    cell_size_m: float | None = None,
    obj_step: int | None = None,
    obj_up_axis: str = "y",
    splat_soften_px: float = SPLAT_SOFTEN_PX,
    extra_meta: dict[str, Any] | None = None,
    masks: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write the chosen files of ``result`` into ``out_dir``; returns {file name: path}.

    Written through one ``output_set.OutputSet`` (``out_dir`` may be one the caller opened, e.g. to hold
    its lock while generating): the files appear in ``out_dir`` all at once or not at all, and a failure
    (disk full, bad input, a file that cannot be replaced) leaves ``out_dir`` as it was, byte for byte.
    Existing files of the same names are replaced; others stay.
    ``plus_one``: height files and mesh on (H + 1) x (W + 1) corner samples; ``engine``
    ("unity", "unreal"): height files on that engine's recommended corner grid (module docstring).
    ``obj_step``: keep every n-th sample in the mesh; None = by size (``mesh_step``).
    ``size_m`` is the terrain's width in metres (default: ``cell_size_m`` per pixel, else
    ``DEFAULT_CELL_SIZE_M``). ``extra_meta`` is merged into meta.json (e.g. the inputs given to the CLI).
    ``masks`` {file name: [H, W] 0..1} are written as 16-bit grayscale PNGs beside the splat maps (the
    erosion masks ``flow.png``, ``deposition.png``, ``wear.png``).
    Raises ``ValueError`` for bad arguments and ``ExportError`` when writing fails.
    """
    fmts = parse_formats(formats)
    h, w = _check_result(result)
    if size_m is not None and cell_size_m is not None:
        raise ValueError("give size_m or cell_size_m, not both")
    if size_m is not None:
        if not size_m > 0:
            raise ValueError(f"size_m must be positive, got {size_m}")
        cell = float(size_m) / w
    else:
        cell = float(cell_size_m) if cell_size_m is not None else DEFAULT_CELL_SIZE_M
        if not cell > 0:
            raise ValueError(f"cell_size_m must be positive, got {cell}")
    if engine is not None and engine not in ENGINE_SIZES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_SIZES)}, got {engine!r}")
    if engine is not None and plus_one:
        raise ValueError("give plus_one or engine, not both (engine grids are corner grids already)")

    # the caller's set (it commits), or one of our own for this call
    own = contextlib.nullcontext(out_dir) if isinstance(out_dir, OutputSet) else OutputSet(out_dir)
    try:
        with own as out:
            return _write_set(result, out, fmts, plus_one, cell, obj_step, obj_up_axis, splat_soften_px,
                              extra_meta, masks, engine)  # fmt: skip
    except OutputPathError as e:
        raise ExportError(str(e)) from e


def _write_set(
    result: TerrainResult,
    out: OutputSet,
    fmts: tuple[str, ...],
    plus_one: bool,
    cell: float,
    obj_step: int | None,
    obj_up_axis: str,
    splat_soften_px: float,
    extra_meta: dict[str, Any] | None,
    masks: dict[str, np.ndarray] | None = None,
    engine: str | None = None,
) -> dict[str, Path]:
    tmp = out.dir
    timings: dict[str, float] = {}
    written: dict[str, Path] = {}
    info: dict[str, Any] = {}
    try:
        grid = height_grid(result, cell, plus_one=plus_one, engine=engine)
        norm_rows = grid["rows"]
        metre_rows = Rows(
            norm_rows.height, norm_rows.width, _then(norm_rows.block, _metres(*result.height_range_m))
        )
        for fmt in fmts:
            if fmt == "meta":
                continue
            t0 = time.perf_counter()
            if fmt == "texture":
                write_texture_png(tmp / "texture.png", result.texture)
            elif fmt == "terrain":
                write_texture_png(tmp / "terrain.png", result.shaded)
            elif fmt == "height16":
                write_height_png16(tmp / "height.png", norm_rows)
            elif fmt == "heightf":
                write_height_tiff(tmp / "height.tif", metre_rows, grid["cell_size_m"])
            elif fmt == "raw16":
                write_height_raw16(tmp / "height.raw", norm_rows)
            elif fmt == "splat":
                write_splat_pngs(tmp / "splat_0.png", tmp / "splat_1.png", result.labels, splat_soften_px)
                for name, mask in (masks or {}).items():  # 0..1 -> uint16 through the height encoding
                    write_height_png16(tmp / name, 2.0 * np.asarray(mask, dtype=np.float32) - 1.0)
                    written[name] = tmp / name
            elif fmt == "obj":
                # The mesh is on the pixels, or on their corners with plus_one (spanning the texture's
                # full extent), never on an engine grid: engines build their meshes from height maps.
                mesh_rows = metre_rows if engine is None else _pixel_metres(result, plus_one)
                info["obj"] = _write_mesh(
                    tmp / "terrain.obj", mesh_rows, cell, obj_step, obj_up_axis, plus_one
                )
            timings[f"write_{fmt}"] = time.perf_counter() - t0
            for name in FILES[fmt]:
                written[name] = tmp / name
        if "meta" in fmts:
            meta = _meta(result, fmts, written, info, timings, plus_one, cell, grid, extra_meta)
            (tmp / "meta.json").write_text(json.dumps(_json_safe(meta), indent=2) + "\n")
            written["meta.json"] = tmp / "meta.json"
        return out.commit()
    except OutputPathError as e:
        raise ExportError(str(e)) from e
    except OSError as e:
        raise ExportError(f"writing the outputs into {out.folder} failed, nothing was written: {e}") from e


def _write_mesh(
    path: Path, mesh_rows: Rows, cell: float, obj_step: int | None, up_axis: str, corner_uv: bool
) -> dict[str, Any]:
    """terrain.obj + .mtl of the metre grid ``mesh_rows`` (``obj_step`` None: by size); meta.json's entry."""
    step = mesh_step(mesh_rows.height, mesh_rows.width) if obj_step is None else obj_step
    obj = write_obj(
        path, mesh_rows, cell, texture_name="texture.png", step=step, up_axis=up_axis, corner_uv=corner_uv
    )
    entry = {k: obj[k] for k in ("vertices", "faces", "step", "up_axis", "cell_size_m")}
    entry["texture"] = "texture.png"
    entry["grid"] = [mesh_rows.width, mesh_rows.height]
    entry["reduced"] = obj["step"] > 1
    return entry


_H16_ENCODING = (
    "uint16 v = round((h + 1) * 32767.5), h = v / 32767.5 - 1 in -1..1; "
    "metres = lo + (h + 1) / 2 * (hi - lo) with [lo, hi] = height_range_m"
)


def engine_settings(engine: str, grid: dict[str, Any], extent_m: list[float], lo: float, hi: float) -> dict:
    """What to type into the engine's height-map import so that the terrain has our size and heights."""
    nw, nh = grid["size"]
    cx, cy = grid["cell_size_m"]
    if engine == "unity":
        return {
            "file": "height.raw (or height.png)",
            "depth": 16,
            "resolution": nw,
            "byte_order": "Windows (little-endian)",
            "flip_vertically": False,
            "terrain_size_m": [extent_m[0], hi - lo, extent_m[1]],  # x, y (height), z
            "position_y_m": lo,
        }
    # Unreal: z (cm) = location_z + (v - 32768) / 128 * z_scale; our v spans lo..hi metres.
    z_scale = (hi - lo) * 100.0 * 128.0 / 65535.0
    return {
        "file": "height.png",
        "resolution": [nw, nh],
        "scale": [cx * 100.0, cy * 100.0, z_scale],
        "location_z_cm": lo * 100.0 + 32768.0 / 65535.0 * (hi - lo) * 100.0,
    }


def _file_entries(written: dict[str, Path], grid: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    """meta.json's "files": each file's bytes and size, and how to read the height files and splat maps."""
    cx, cy = grid["cell_size_m"]
    files: dict[str, Any] = {}
    for name, p in written.items():
        entry: dict[str, Any] = {"bytes": p.stat().st_size}
        if name.startswith("height."):
            entry["size"] = list(grid["size"])  # [width, height]
        elif name.endswith(".png"):
            entry["size"] = [w, h]
        files[name] = entry
    if "height.png" in files:
        files["height.png"]["encoding"] = _H16_ENCODING
    if "height.tif" in files:
        files["height.tif"].update(
            encoding="float32 metres, GeoTIFF (deflate, floating-point predictor)",
            cell_size_m=[cx, cy],
            origin_m=[-grid["size"][0] * cx / 2.0, grid["size"][1] * cy / 2.0],
            origin="upper-left corner of the upper-left sample's cell; x east, y north, the terrain's "
            "centre at 0, 0 (as the OBJ mesh); no CRS",
        )
    if "height.raw" in files:
        files["height.raw"].update(
            encoding=_H16_ENCODING,
            dtype="uint16",
            byte_order="little-endian",
            header_bytes=0,
            row_order="row 0 = south (Unity's RAW layout: import with Flip Vertically off)",
        )
    for name, chans in SPLAT_CHANNELS.items():
        if name in files:
            files[name]["channels"] = dict(zip("RGBA", chans, strict=True))
    return files


def _meta(
    result: TerrainResult,
    fmts: tuple[str, ...],
    written: dict[str, Path],
    info: dict[str, Any],
    timings: dict[str, float],
    plus_one: bool,
    cell: float,
    grid: dict[str, Any],
    extra_meta: dict[str, Any] | None,
) -> dict[str, Any]:
    h, w = result.size
    lo, hi = (float(v) for v in result.height_range_m)
    cx, cy = grid["cell_size_m"]
    files = _file_entries(written, grid, w, h)
    hn = np.asarray(result.height)
    to_m = _metres(lo, hi)
    extent = [w * cell, h * cell]
    meta: dict[str, Any] = {
        "format": "terrain-gan-output",
        "meta_version": META_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": int(result.seed),
        "model": result.model,
        "size": [w, h],
        "height_range_m": [lo, hi],
        "height_stats_m": {  # of the generated pixels
            "min": float(to_m(hn.min())),
            "max": float(to_m(hn.max())),
            "mean": float(lo + (hn.mean(dtype=np.float64) + 1.0) * 0.5 * (hi - lo)),
        },
        "cell_size_m": cell,
        "extent_m": extent,
        "plus_one": bool(plus_one),
        "height_grid": {
            "size": list(grid["size"]),
            "cell_size_m": [cx, cy],
            "layout": grid["layout"]
            + (" (first and last samples on the map's edges)" * (grid["layout"] == "corners")),
            "engine": grid["engine"],
        },
        "orientation": "image row 0 = north, column 0 = west; light from the north-west",
        "formats": list(fmts),
        "files": files,
        "class_shares": class_shares(result.labels),
        "timings": {**{k: float(v) for k, v in result.timings.items()}, **timings},
        **info,
    }
    if grid["engine"]:
        meta["engine_import"] = engine_settings(grid["engine"], grid, extent, lo, hi)
    for k, v in (extra_meta or {}).items():
        if k == "timings" and isinstance(v, dict):
            meta["timings"].update(v)
        else:
            meta[k] = v
    return meta
