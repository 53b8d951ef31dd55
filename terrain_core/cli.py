"""Command line: ``python -m terrain_core generate|info``.

    python -m terrain_core generate --labels MAP.png --out DIR [--model PATH] [--seed N] [--size WxH]
        [--tile N] [--format texture,terrain,height16,heightf,raw16,splat,obj,meta]
        [--plus-one | --engine unity|unreal] [--obj-step N] [--erosion off|light|medium|strong] ...
    python -m terrain_core info [--model PATH] [--json]

Exit codes (``terrain_core.exits``): 0 done; 2 bad input (unreadable or truncated map, bad option, bad
model file, too large, output folder not usable or in use by another run), with one line on stderr and
nothing written; 1 an unexpected internal error; 130 interrupted, 143 terminated (nothing written); 141
stdout closed by its reader. Every file of a run appears in DIR at the end or none does, and a failed
re-run leaves the earlier files as they were (``output_set.OutputSet``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core import objmesh, outputs
from terrain_core.argtypes import int_in, positive_float
from terrain_core.erosion import LEVELS
from terrain_core.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    UsageError,
    one_line,
    sigterm_unwinds,
    silence_stdout,
)
from terrain_core.labels import MAX_SIDE, LabelMapError, class_shares, resize_nearest
from terrain_core.noise import SEED_MAX
from terrain_core.output_set import OutputPathError, OutputSet

PROG = "python -m terrain_core"


class CliError(UsageError):
    """A bad input or option: printed as one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------------------- parsing


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (or 'N' for a square) -> (width, height) in pixels."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            w = h = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT like 1024x512 (or one number), got {text!r}"
        ) from None
    from terrain_core.imageio import MIN_SIDE

    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"each side must be {MIN_SIDE}..{MAX_SIDE} pixels, got {w}x{h}")
    return w, h


def _formats(text: str) -> tuple[str, ...]:
    try:
        return outputs.parse_formats(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like argparse, but without the usage block
        raise CliError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Paint a 7-class terrain map, get texture + height + mesh files: texture.png, "
        "terrain.png (shaded), height.png (16-bit), height.tif (float metres, GeoTIFF), splat_0/1.png, "
        "terrain.obj + .mtl (reduced above 1024 px per side), meta.json (+ flow/deposition/wear.png with "
        "--erosion); height.raw (16-bit, Unity) on request. Exit code 2 on bad input, with nothing written.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    g = sub.add_parser("generate", help="generate terrain files from a painted class map")
    _add_input_args(g)
    _add_tiling_args(g)
    _add_output_args(g)
    _add_runtime_args(g)
    _add_erosion_args(g)
    g.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    i = sub.add_parser("info", help="print a model's metadata")
    i.add_argument("--model", metavar="PATH", help=".onnx or .safetensors model (default: built-in)")
    i.add_argument("--json", action="store_true", help="the full metadata as JSON")
    return p


def _add_int(g: Any, flag: str, lo: int, hi: int, text: str, default: int | None = None) -> None:
    """An integer option ``flag`` in lo..hi (the range check names the option), ``text`` its help."""
    g.add_argument(flag, type=int_in(flag, lo, hi), default=default, metavar="N", help=text)


def _add_input_args(g: argparse.ArgumentParser) -> None:
    g.add_argument("--labels", required=True, metavar="MAP", help="painted class map (PNG, ...)")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created; files replaced)")
    g.add_argument("--model", metavar="PATH", help=".onnx or .safetensors model (default: built-in)")
    seed_help = "which variation of the map (default 0); the same map and seed give the same terrain"
    _add_int(g, "--seed", 0, SEED_MAX, seed_help, default=0)
    g.add_argument("--size", type=parse_size, metavar="WxH", help="resize the map first (nearest)")


def _add_tiling_args(g: argparse.ArgumentParser) -> None:
    _add_int(
        g, "--tile", 0, MAX_SIDE, "generate in tiles of N pixels (0 = never; default: automatic above 1024)"
    )
    _add_int(
        g, "--overlap", 0, 4096, "pixels shared and blended by neighbouring tiles (with --tile; default 64)"
    )


def _add_output_args(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--format",
        type=_formats,
        default=None,
        metavar="LIST",
        help=f"comma-separated subset of {','.join(outputs.FORMATS)}, or all (default: all but raw16); "
        "an explicit list that includes obj writes the full mesh unless --obj-step says otherwise",
    )
    grid = g.add_mutually_exclusive_group()
    grid.add_argument("--plus-one", action="store_true", help="height files and mesh at (W+1)x(H+1)")
    grid.add_argument(
        "--engine",
        choices=tuple(outputs.ENGINE_SIZES),
        help="height files at the engine's recommended size (Unity 2^n+1, Unreal 1009, 2017, ...), "
        "resampled, with the cell size adjusted to keep the extent",
    )
    ext = g.add_mutually_exclusive_group()
    ext.add_argument("--size-m", type=positive_float("--size-m"), metavar="M", help="terrain width, metres")
    ext.add_argument(
        "--cell-size",
        type=positive_float("--cell-size"),
        metavar="M",
        help=f"metres per pixel (default {outputs.DEFAULT_CELL_SIZE_M:g})",
    )
    _add_int(
        g, "--obj-step", 1, 1024,
        "keep every N-th height sample in the mesh; 1 = the full mesh (default: 1 up to "
        f"{outputs.MESH_FULL_MAX_SIDE} px per side, else at most {outputs.MESH_VERTEX_BUDGET:,} vertices)",
    )  # fmt: skip
    g.add_argument("--obj-up", choices=("y", "z"), default="y", help="OBJ up axis (default y)")


def _add_runtime_args(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        help="check the model runs on this runtime; without --model, pick the built-in default of its type",
    )
    _add_int(g, "--threads", 1, 1024, "CPU threads for the network (default: the runtime's choice)")
    g.add_argument(
        "--device", choices=("cpu", "cuda", "mps", "auto"), default="cpu",
        help="where the network runs (mps and auto: torch models only); default cpu",
    )  # fmt: skip
    g.add_argument(
        "--max-memory",
        type=positive_float("--max-memory"),
        metavar="GB",
        help="refuse runs estimated to need more (default: the memory available now)",
    )


def _add_erosion_args(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--erosion", choices=LEVELS, default="off",
        help="erode the generated relief (rivers, talus, sediment) and write flow.png, deposition.png, "
        "wear.png beside the splat maps; default off (docs/EROSION.md)",
    )  # fmt: skip
    _add_int(g, "--erosion-steps", 0, 1000, "erosion steps instead of the level's own (expert)")


@dataclass(frozen=True)
class GenerateOptions:
    """What ``generate`` was asked for, typed: built once from the parsed command line (``from_args``)."""

    labels: str  # the painted class map's file
    out: str  # output folder
    model: str | None = None  # .onnx or .safetensors file; None = the built-in default
    seed: int = 0
    size: tuple[int, int] | None = None  # (width, height) the map is resized to (nearest); None = its own
    tile: int | None = None  # tile side in pixels; None = automatic, 0 = never
    overlap: int | None = None  # pixels neighbouring tiles share; None = the runtime's default
    formats: tuple[str, ...] | None = None  # None = outputs.DEFAULT_FORMATS, the mesh reduced by size
    plus_one: bool = False  # height files and mesh on (W+1) x (H+1) corner samples
    engine: str | None = None  # height files on this engine's grid ("unity", "unreal"); None = ours
    size_m: float | None = None  # terrain width in metres; None = cell_size_m per pixel
    cell_size_m: float | None = None  # metres per pixel; None = outputs.DEFAULT_CELL_SIZE_M
    obj_step: int | None = None  # keep every N-th sample in the mesh; None = by size or --format
    obj_up: str = "y"  # OBJ up axis, "y" or "z"
    runtime: str | None = None  # "onnx" or "torch": the model must run there; None = by file type
    threads: int | None = None  # CPU threads for the network; None = the runtime's default
    device: str = "cpu"  # "cpu", "cuda", "mps" (torch) or "auto"
    max_memory_gb: float | None = None  # refuse runs estimated above this; None = memory available now
    erosion: str = "off"  # erosion level (terrain_core.erosion.LEVELS)
    erosion_steps: int | None = None  # steps instead of the level's own; None = the level's
    quiet: bool = False  # print only errors
    argv: tuple[str, ...] = ()  # the arguments as given, for meta.json's "command"

    @classmethod
    def from_args(cls, ns: argparse.Namespace, argv: Sequence[str]) -> GenerateOptions:
        """The options of a parsed ``generate`` command line (``argv``: the arguments it was parsed from)."""
        return cls(
            labels=ns.labels, out=ns.out, model=ns.model, seed=ns.seed, size=ns.size, tile=ns.tile,
            overlap=ns.overlap, formats=ns.format, plus_one=ns.plus_one, engine=ns.engine,
            size_m=ns.size_m, cell_size_m=ns.cell_size, obj_step=ns.obj_step, obj_up=ns.obj_up,
            runtime=ns.runtime, threads=ns.threads, device=ns.device, max_memory_gb=ns.max_memory,
            erosion=ns.erosion, erosion_steps=ns.erosion_steps, quiet=ns.quiet, argv=tuple(argv),
        )  # fmt: skip


# ----------------------------------------------------------------------------------------- memory


def available_memory_bytes() -> int | None:
    """Memory the system can give now (Linux MemAvailable; else total physical memory; None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def estimate_memory_bytes(gen_config: Any, width: int, height: int, tile: int | None) -> int:
    """Rough peak memory of generating and writing a map (bytes), tiled (``tile`` px) or not (None).

    Whole-map buffers: the class map and its one-hot (untiled), the noise canvas, the float outputs and
    the output writers' copies (~110 bytes per pixel). Network: a few live activation tensors of the widest
    stage per pixel of the tile (or of the map), plus the k*k neighbourhoods of attention stages.
    Deliberately generous: refusing a run that would fit is better than swapping the machine to a halt.
    """
    ds = gen_config.downsample
    hp, wp = -(-height // ds) * ds, -(-width // ds) * ds
    px = hp * wp
    n_stages = len(gen_config.stage_channels)
    per_stage = [c / 4.0 ** (n_stages - 1 - i) for i, c in enumerate(gen_config.stage_channels)]  # floats/px
    noise = sum(1.0 / f**2 for f in gen_config.block_scales())
    k2 = gen_config.attention_kernel**2
    attn = max((per_stage[s] * k2 for s in gen_config.attention_stages), default=0.0)
    net_per_px = 4.0 * (
        8.0 * max(per_stage) + 2.0 * sum(per_stage) + attn + 2.0 * (gen_config.num_classes + 7)
    )
    fixed_per_px = 110.0 + 4.0 * noise
    if tile is None:
        return int(px * (fixed_per_px + net_per_px))
    t = min(tile, max(hp, wp))
    return int(px * fixed_per_px + t * t * net_per_px)


# ----------------------------------------------------------------------------------------- commands


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


class _Progress:
    def __init__(self, quiet: bool, stream):
        self.quiet, self.stream, self.last = quiet, stream, -1

    def __call__(self, fraction: float) -> None:
        pct = int(round(100 * fraction))
        if self.quiet or pct == self.last:
            return
        self.last = pct
        end = "\n" if pct >= 100 else ""
        print(f"\r  generating: {pct:3d}%", end=end, file=self.stream, flush=True)


def _model_for_runtime(opts: GenerateOptions) -> Path | None:
    """The model path to load: ``--model`` checked against ``--runtime``, or the default of that type."""
    from terrain_core.model_format import ModelFileError, choose_model_path

    try:
        return choose_model_path(opts.model, opts.runtime, strict=True)
    except ModelFileError as e:
        raise CliError(f"--runtime {opts.runtime}: {e}") from None


def cmd_generate(opts: GenerateOptions, out_stream, err_stream) -> int:
    t_start = time.perf_counter()
    say = (lambda *a: None) if opts.quiet else (lambda *a: print(*a, file=out_stream, flush=True))
    if opts.tile is None and opts.overlap is not None:
        raise CliError("--overlap needs --tile N")
    if opts.erosion == "off" and opts.erosion_steps:
        raise CliError("--erosion-steps needs --erosion light, medium or strong")
    # The output folder is checked and locked before any work, and stays locked until the files are in.
    try:
        out = OutputSet(Path(opts.out), what="--out").open()
    except OutputPathError as e:
        raise CliError(str(e)) from None
    try:
        return _generate(opts, out, say, t_start, err_stream)
    finally:
        out.close()


def _generate(opts: GenerateOptions, out: OutputSet, say, t_start: float, err_stream) -> int:
    """Read, check, generate, erode, write and report: the steps of ``generate`` in order."""
    t0 = time.perf_counter()
    labels = _read_map(opts.labels)
    t_read = time.perf_counter() - t0
    src_h, src_w = labels.shape
    width, height = opts.size if opts.size else (src_w, src_h)
    gen = _load_generator(opts)
    # The memory check comes before the resize, so that a huge --size is refused without allocating it.
    _check_memory(gen, opts, width, height)
    if (width, height) != (src_w, src_h):
        labels = resize_nearest(labels, height, width)
    model_desc = gen.name + (
        " (untrained weights: the output is noise-like, not terrain)" if gen.untrained else ""
    )
    say(f"map: {opts.labels} ({src_w}x{src_h}" + (f", resized to {width}x{height})" if opts.size else ")"))
    say(f"model: {model_desc} [{gen.runtime}, {gen.device}]")
    t0 = time.perf_counter()
    result = _run_generator(gen, labels, opts, err_stream)
    t_generate = time.perf_counter() - t0
    masks, erosion_meta = _erode(result, opts, say)
    timings = {"read_map": t_read, "generate": t_generate}
    extra = _run_meta(opts, gen.info, labels, (src_w, src_h), timings, erosion_meta)
    plan = _MeshPlan.of(opts, width, height)
    t0 = time.perf_counter()
    files = _write(result, out, opts, plan.step, extra, masks)
    t_write = time.perf_counter() - t0
    _report(say, result, opts, plan, files, out.folder)
    say(
        f"time: read {t_read:.2f} s, generate {t_generate:.2f} s, write {t_write:.2f} s, "
        f"total {time.perf_counter() - t_start:.2f} s"
    )
    return EXIT_OK


def _read_map(path: str) -> np.ndarray:
    from terrain_core import imageio

    try:
        return imageio.read_label_map(path)
    except LabelMapError as e:
        raise CliError(str(e)) from None


def _load_generator(opts: GenerateOptions):
    from terrain_core.runtime import ModelFileError, RuntimeUnavailableError, TerrainGenerator

    model_path = _model_for_runtime(opts)
    try:
        return TerrainGenerator.load(model_path, device=opts.device, threads=opts.threads)
    except (ModelFileError, RuntimeUnavailableError) as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(f"--model: {e}") from None


def _check_memory(gen, opts: GenerateOptions, width: int, height: int) -> None:
    """Refuse a run estimated to need more memory than allowed, tiled as the runtime will tile it."""
    tile = gen.choose_tile(height, width, opts.tile)
    need = estimate_memory_bytes(gen.config, width, height, tile)
    limit = opts.max_memory_gb * 1e9 if opts.max_memory_gb else available_memory_bytes()
    if limit is None or need <= 0.9 * limit:
        return
    have = f"the {_fmt_bytes(limit)} " + ("allowed by --max-memory" if opts.max_memory_gb else "available")
    if tile is None:
        raise CliError(
            f"a {width}x{height} map without tiling needs about {_fmt_bytes(need)} of memory, more than "
            f"{have}; use --tile 512 (or a smaller --size)"
        )
    raise CliError(
        f"a {width}x{height} map needs about {_fmt_bytes(need)} of memory even in {tile}-pixel "
        f"tiles, more than {have}; use a smaller --size"
    )


def _run_generator(gen, labels: np.ndarray, opts: GenerateOptions, err_stream):
    h, w = labels.shape
    try:
        result = gen.generate(
            labels,
            seed=opts.seed,
            tile=opts.tile,
            overlap=opts.overlap,  # None: the runtime's default, at most half the tile
            progress=_Progress(opts.quiet or not err_stream.isatty(), err_stream),
        )
    except (LabelMapError, ValueError) as e:
        raise CliError(str(e)) from None
    except MemoryError:
        raise CliError(f"out of memory generating {w}x{h}; use --tile 512 or a smaller --size") from None
    if not np.isfinite(result.height).all():
        where = opts.model or "the built-in model"
        raise CliError(f"{where}: the model produced NaN or infinite heights; its weights are broken")
    return result


def _run_meta(
    opts: GenerateOptions,
    info: dict,
    labels: np.ndarray,
    src_size: tuple[int, int],
    timings: dict[str, float],
    erosion_meta: dict | None,
) -> dict[str, Any]:
    """What meta.json records of the run beyond the result: inputs, model, settings, command."""
    h, w = labels.shape
    extra: dict[str, Any] = {
        "inputs": {
            "labels": str(Path(opts.labels).resolve()),
            "labels_size": list(src_size),
            "size": [w, h],
            "resized": bool(opts.size and (w, h) != src_size),
            "class_shares": class_shares(labels),
        },
        "model_info": {
            k: info.get(k)
            for k in ("name", "path", "runtime", "device", "untrained", "terrain_core_version", "created")
        },
        "generation": {"tile": opts.tile, "overlap": opts.overlap, "seed": opts.seed},
        "command": " ".join([PROG, *opts.argv]),
        "timings": timings,
    }
    if erosion_meta is not None:
        extra["erosion"] = erosion_meta
    return extra


@dataclass(frozen=True)
class _MeshPlan:
    """The mesh grid (pixels, or corners with --plus-one) and the step the OBJ keeps of it."""

    rows: int
    cols: int
    step: int
    asked: bool  # the step was given with --obj-step

    @classmethod
    def of(cls, opts: GenerateOptions, width: int, height: int) -> _MeshPlan:
        rows, cols = (height + 1, width + 1) if opts.plus_one else (height, width)
        if opts.obj_step is not None:
            step = opts.obj_step
        elif opts.formats is not None:  # obj named in an explicit --format: the full mesh, as asked
            step = 1
        else:
            step = outputs.mesh_step(rows, cols)
        return cls(rows, cols, step, opts.obj_step is not None)


def _write(result, out: OutputSet, opts: GenerateOptions, obj_step: int, extra: dict, masks) -> dict:
    h, w = result.size
    try:
        return outputs.write_outputs(
            result,
            out,
            opts.formats or outputs.DEFAULT_FORMATS,
            plus_one=opts.plus_one,
            engine=opts.engine,
            size_m=opts.size_m,
            cell_size_m=opts.cell_size_m,
            obj_step=obj_step,
            obj_up_axis=opts.obj_up,
            extra_meta=extra,
            masks=masks,
        )
    except (outputs.ExportError, ValueError) as e:
        raise CliError(str(e)) from None
    except MemoryError:
        raise CliError(f"out of memory writing the {w}x{h} outputs; use a smaller --size") from None


def _report(say, result, opts: GenerateOptions, plan: _MeshPlan, files: dict, out_dir: Path) -> None:
    """The lines a finished run prints: heights, mesh reduction, engine grid, notes, the files."""
    h, w = result.size
    formats = opts.formats or outputs.DEFAULT_FORMATS
    lo, hi = result.height_range_m
    h_min, h_max = (
        lo + (float(v) + 1.0) * 0.5 * (hi - lo) for v in (result.height.min(), result.height.max())
    )
    say(f"height: {h_min:.1f} .. {h_max:.1f} m (model range {lo:g} .. {hi:g} m)")
    if "obj" in formats and plan.step > 1:
        kept = [len(objmesh.grid_indices(n, plan.step)) for n in (plan.cols, plan.rows)]
        say(
            f"mesh: reduced to every {_ordinal(plan.step)} sample, {kept[0]}x{kept[1]} of "
            f"{plan.cols}x{plan.rows} vertices" + ("" if plan.asked else " (--obj-step 1 for the full mesh)")
        )
    if opts.engine:
        nw, nh = outputs.engine_grid(opts.engine, w, h)
        say(
            f"heights: {nw}x{nh} samples, {opts.engine.capitalize()}'s recommended size "
            "(import settings: engine_import in meta.json)"
        )
    if "obj" in formats and "texture" not in formats:
        say("note: terrain.mtl refers to texture.png, which was not written (add texture to --format)")
    say(f"wrote {len(files)} files to {out_dir.resolve()}:")
    for name, path in files.items():
        say(f"  {name:<12} {_fmt_bytes(path.stat().st_size):>10}")


def _erode(result, opts: GenerateOptions, say) -> tuple[dict | None, dict | None]:
    """Erode ``result`` in place of its height when ``--erosion`` asks; the masks and meta.json's entry."""
    if opts.erosion == "off":
        return None, None
    from terrain_core import erosion

    h, w = result.size
    cell = opts.size_m / w if opts.size_m else opts.cell_size_m or outputs.DEFAULT_CELL_SIZE_M
    try:
        eroded = erosion.erode(
            result.height_m,
            result.labels,
            strength=opts.erosion,
            iterations=opts.erosion_steps,
            cell_size_m=float(cell),
            seed=opts.seed,
        )
    except erosion.ErosionError as e:
        raise CliError(f"--erosion: {e}") from None
    except MemoryError:
        raise CliError(f"out of memory eroding {w}x{h}; use a smaller --size") from None
    result.height = erosion.eroded_result(result, eroded).height
    result.timings["erosion"] = eroded.seconds
    images, encodings = erosion.mask_images(eroded)
    b = eroded.balance
    say(
        f"erosion: {opts.erosion}, {eroded.settings['steps']} steps in {eroded.seconds:.2f} s; "
        f"{b['eroded_m3'] / 1e6:.1f} million m3 moved, {b['outflow_m3'] / 1e6:.1f} out to water and edges"
    )
    splat = "splat" in (opts.formats or outputs.DEFAULT_FORMATS)
    meta = {
        "level": opts.erosion,
        "cell_size_m": float(cell),
        "seed": opts.seed,
        "settings": eroded.settings,
        "balance_m3": b,
        "masks": encodings if splat else {},
    }
    return (images if splat else None), meta


def cmd_info(model: str | None, as_json: bool, out_stream) -> int:
    from terrain_core.model_format import choose_model_path
    from terrain_core.runtime import (
        UNTRAINED_PRESET,
        ModelFileError,
        RuntimeUnavailableError,
        read_model_metadata,
        untrained_metadata,
    )

    path = choose_model_path(model or None)
    try:
        if path is None:  # what `generate` uses without a shipped model (built without torch here)
            meta = untrained_metadata()
            meta["path"] = None
            meta["created"] = ""  # made on the fly, not a file with a date
        else:
            meta = dict(read_model_metadata(path))
            meta["path"] = str(path)
    except (ModelFileError, RuntimeUnavailableError) as e:
        raise CliError(str(e)) from None
    if as_json:
        print(json.dumps(meta, indent=2), file=out_stream)
        return EXIT_OK
    g = meta.get("generator", {})
    lo, hi = meta.get("height_range_m", [None, None])
    none = f"(none shipped: an untrained '{UNTRAINED_PRESET}' generator is used)"
    attention = tuple(g.get("attention_stages", ())) or "off"
    lines = [
        f"model:      {meta.get('name')}",
        f"file:       {meta['path'] or none}",
        f"format:     {meta.get('format')} v{meta.get('format_version')}, "
        f"terrain_core {meta.get('terrain_core_version')}",
        f"created:    {meta.get('created') or '-'}",
        f"generator:  {g.get('conv_type')}, stages {tuple(g.get('stage_channels', ()))}, "
        f"attention {attention}, scaled sum {'on' if g.get('scaled_sum') else 'off'}, "
        f"output {g.get('output_mode')}",
        f"input size: multiples of {2 ** (len(g.get('stage_channels', ())) - 1)} px natively (others padded)",
        f"height:     {lo:g} .. {hi:g} m ({meta.get('height_range_m_source', 'model')})",
        "classes:    "
        + ", ".join(f"{c['id']} {c['name']} {tuple(c['rgb'])}" for c in meta.get("classes", [])),
        f"provenance: {json.dumps(meta.get('provenance', {}))}",
    ]
    print("\n".join(lines), file=out_stream)
    return EXIT_OK


# ----------------------------------------------------------------------------------------- entry


def main(argv: Sequence[str] | None = None, *, stdout=None, stderr=None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv[1:]); returns the exit code instead of exiting."""
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    parser = build_parser()
    try:
        with sigterm_unwinds():
            try:
                argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
                args = parser.parse_args(argv)
            except SystemExit as e:  # --help (0)
                return int(e.code or 0)
            if args.command is None:
                parser.print_help(out_stream)
                return EXIT_USAGE
            if args.command == "generate":
                return cmd_generate(GenerateOptions.from_args(args, argv), out_stream, err_stream)
            return cmd_info(args.model, args.json, out_stream)
    except CliError as e:
        print(f"error: {one_line(e)}", file=err_stream)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): stop quietly
        return silence_stdout() if out_stream is sys.stdout else EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=err_stream)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated: nothing was written", file=err_stream)
        return EXIT_TERMINATED
    except Exception as e:  # a bug, not a bad input: one line, and the traceback only on request
        if os.environ.get("TERRAIN_DEBUG"):
            raise
        print(
            f"internal error: {type(e).__name__}: {one_line(e)} "
            "(set TERRAIN_DEBUG=1 for the traceback; please report it)",
            file=err_stream,
        )
        return EXIT_INTERNAL
