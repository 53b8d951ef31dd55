"""The headless batch's command line as typed options (no bpy: parsed and checked before Blender works).

``parse_args`` is the only place that sees argparse; everything below it takes a :class:`BatchOptions`.
A bad argument raises :class:`BatchUsageError` with one line (the batch exits 2 with it).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

from terrain_core.argtypes import int_in, positive_float
from terrain_core.imageio import MIN_SIDE
from terrain_core.noise import check_seed

MIN_BLENDER = (4, 2, 0)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".tga", ".exr", ".webp"}
FORMATS = ("blend", "obj", "glb", "png", "exr")


class BatchUsageError(Exception):
    """A bad argument or an unusable Blender: one line on stderr, exit code 2."""


@dataclass(frozen=True)
class BatchOptions:
    inputs: tuple[str, ...]  # map images and/or folders of them
    out: str  # output folder
    seeds: tuple[int, ...] = (0,)  # every map is generated once per seed, in this order
    model: str = ""  # .onnx or .safetensors file; "" = the built-in model
    formats: frozenset[str] = frozenset({"blend", "png"})  # of FORMATS
    render: bool = False  # a Cycles CPU preview.png per map and seed
    render_size: tuple[int, int] = (640, 400)  # preview (width, height), pixels
    samples: int = 16  # Cycles samples per preview
    show_map: bool = False  # previews show the class map on a plane west of the terrain
    contact_sheet: bool = False  # OUT/contact_sheet.png of all previews
    resolution: int = 256  # generation resolution, pixels along the longer side; 0 = the map's own
    mesh_resolution: int = 0  # mesh vertices along the longer side; 0 = by size (default_mesh_resolution)
    size_m: float = 200.0  # terrain extent along the longer side, metres
    height_range: tuple[float, float] = (0.0, 40.0)  # metres at the model's lowest and highest ground
    tile: int = -1  # tile side in pixels; -1 automatic, 0 never
    threads: int = 0  # CPU threads for the runtime; 0 = all
    erosion: str = "off"  # terrain_core.erosion level
    runtime: str = "AUTO"  # which runtime runs the built-in model: AUTO, ONNX, TORCH


def script_args(argv: list[str]) -> list[str]:
    """The arguments after ``--`` (Blender keeps its own before it); all of them if there is no ``--``."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def check_blender(version: tuple[int, ...]) -> str | None:
    """Why this Blender (``bpy.app.version``) cannot run the batch, or None."""
    v = tuple(version)
    if v < MIN_BLENDER:
        return (
            f"Blender {'.'.join(map(str, v))} is too old: this script needs Blender "
            f"{'.'.join(map(str, MIN_BLENDER))} or newer (extensions, the mesh attribute API)."
        )
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print its usage block too)
        raise BatchUsageError(f"{message} (see batch.py --help)")


def _parser() -> _Parser:
    p = _Parser(
        prog="batch.py",
        description="Generate terrain from class map images headless (Blender 4.2+ or the bpy module).",
    )
    add = p.add_argument
    add("--input", "-i", nargs="+", required=True, help="map images and/or folders of them")
    add("--out", "-o", required=True, help="output folder")
    add("--seed", type=int_in("--seed", 0), default=0, help="seed (default 0)")
    add("--seeds", default="", help="several seeds: '1,2,5' or a range '0-3' (overrides --seed)")
    add("--model", default="", help=".onnx or .safetensors model file (default: the built-in model)")
    add("--formats", default="blend,png", help=f"comma list of {','.join(FORMATS)} (default blend,png)")
    add("--render", action="store_true", help="render a Cycles CPU preview PNG per map and seed")
    add("--render-size", default="640x400", help="preview size WxH (default 640x400)")
    add("--samples", type=int_in("--samples", 1), default=16, help="Cycles samples for previews (default 16)")
    add("--show-map", action="store_true", help="previews show the class map on a plane west of the terrain")
    add("--contact-sheet", action="store_true", help="also write OUT/contact_sheet.png of all previews")
    add(
        "--resolution", type=int_in("--resolution", MIN_SIDE, zero_ok=True), default=256,
        help="generation resolution, pixels (0 = the map's)",
    )  # fmt: skip
    add(
        "--mesh-resolution", type=int_in("--mesh-resolution", 2, zero_ok=True), default=0,
        help="mesh vertices along the longer side (0 = by size: one per generated pixel up to 1024 "
        "pixels, above that 1025, the mesh vertex budget of terrain_core.outputs)",
    )  # fmt: skip
    add(
        "--size-m", type=positive_float("--size-m"), default=200.0,
        help="terrain size along the longer side, metres",
    )  # fmt: skip
    add("--height-m", default="0,40", help="height range 'LO,HI' or the relief 'HI' in metres")
    add("--tile", type=int_in("--tile", -1), default=-1, help="tile size in pixels (-1 automatic, 0 never)")
    add("--threads", type=int_in("--threads", 0), default=0, help="CPU threads for the runtime (0 = all)")
    add(
        "--erosion", choices=("off", "light", "medium", "strong"), default="off",
        help="erode the relief (docs/EROSION.md); writes flow/deposition/wear.png with the png format",
    )  # fmt: skip
    add("--runtime", choices=("AUTO", "ONNX", "TORCH"), default="AUTO", help="runtime of the built-in model")
    return p


def parse_args(args: list[str]) -> BatchOptions:
    """The batch's options from its arguments (after ``--``); raises ``BatchUsageError`` with one line."""
    p = _parser()
    ns = p.parse_args(args)
    if ns.tile > 0 and ns.tile < 32:
        p.error(f"argument --tile: must be -1, 0 or at least 32, got {ns.tile}")
    try:
        seeds = parse_seeds(ns.seeds) if ns.seeds else [ns.seed]
        for seed in seeds:  # refused here, before any map is read, not in the middle of the batch
            check_seed(seed, "--seed")
        converted = dict(
            inputs=tuple(ns.input),
            seeds=tuple(seeds),
            formats=frozenset(parse_formats(ns.formats)),
            render_size=parse_render_size(ns.render_size),
            height_range=parse_height(ns.height_m),
        )
    except ValueError as e:
        p.error(str(e))
    # every other option as argparse typed and checked it, under its own name
    as_given = {f.name: getattr(ns, f.name) for f in fields(BatchOptions) if f.name not in converted}
    return BatchOptions(**converted, **as_given)


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, sep, b = part.partition("-")
        if sep and a:
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise ValueError(f"bad seed range {part!r}") from None
            if hi < lo or hi - lo > 10000:
                raise ValueError(f"bad seed range {part!r}")
            seeds.extend(range(lo, hi + 1))
        else:
            try:
                seeds.append(int(part))
            except ValueError:
                raise ValueError(f"--seeds needs non-negative integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds needs non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


def parse_formats(text: str) -> set[str]:
    fmts = {f.strip().lower() for f in text.split(",") if f.strip()}
    bad = fmts - set(FORMATS)
    if bad:
        raise ValueError(f"unknown format(s) {sorted(bad)}; choose from {','.join(FORMATS)}")
    return fmts


def parse_height(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--height-m must be 'HI' or 'LO,HI' in metres, got {text!r}") from None
    lo, hi = (0.0, parts[0]) if len(parts) == 1 else tuple(parts)
    if len(parts) > 2 or not hi > lo:
        raise ValueError(f"--height-m must be 'HI' or 'LO,HI' with HI > LO, got {text!r}")
    return lo, hi


def parse_render_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        wh = (int(w), int(h))
    except ValueError:
        raise ValueError(f"--render-size must be WxH like 640x400, got {text!r}") from None
    if min(wh) < 16:
        raise ValueError("--render-size must be at least 16x16")
    return wh


def default_mesh_resolution(gen_side: int) -> int:
    """Mesh vertices along the longer side when not given: 0 (one per pixel) up to
    ``outputs.MESH_FULL_MAX_SIDE`` pixels, else as many as keep a square mesh within the vertex budget."""
    from terrain_core import outputs

    if gen_side <= outputs.MESH_FULL_MAX_SIDE:
        return 0
    return math.isqrt(outputs.MESH_VERTEX_BUDGET)


def collect_inputs(items: tuple[str, ...] | list[str]) -> tuple[list[Path], list[str]]:
    """Map files from files and folders (sorted), plus an error line per input that is not usable."""
    maps, errors = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{p}: folder has no map images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            maps.extend(found)
        elif p.is_file():
            maps.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return list(dict.fromkeys(maps)), errors
