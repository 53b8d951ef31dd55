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
from terrain_core.labels import LabelMapError, class_shares, resize_nearest
from terrain_core.noise import SEED_MAX
from terrain_core.output_set import OutputPathError, OutputSet

MAX_SIDE = 16384  # as terrain_core.runtime.MAX_SIDE
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
    g.add_argument("--labels", required=True, metavar="MAP", help="painted class map (PNG, ...)")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created; files replaced)")
    g.add_argument("--model", metavar="PATH", help=".onnx or .safetensors model (default: built-in)")
    g.add_argument(
        "--seed", type=int_in("--seed", 0, SEED_MAX), default=0, metavar="N",
        help="which variation of the map (default 0); the same map and seed give the same terrain",
    )  # fmt: skip
    g.add_argument("--size", type=parse_size, metavar="WxH", help="resize the map first (nearest)")
    g.add_argument(
        "--tile",
        type=int_in("--tile", 0, MAX_SIDE),
        default=None,
        metavar="N",
        help="generate in tiles of N pixels (0 = never; default: automatic above 1024)",
    )
    g.add_argument(
        "--overlap", type=int_in("--overlap", 0, 4096), default=None, metavar="N",
        help="pixels shared and blended by neighbouring tiles (with --tile; default 64)",
    )  # fmt: skip
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
    g.add_argument(
        "--obj-step",
        type=int_in("--obj-step", 1, 1024),
        default=None,
        metavar="N",
        help="keep every N-th height sample in the mesh; 1 = the full mesh (default: 1 up to "
        f"{outputs.MESH_FULL_MAX_SIDE} px per side, else at most "
        f"{outputs.MESH_VERTEX_BUDGET:,} vertices)",
    )
    g.add_argument("--obj-up", choices=("y", "z"), default="y", help="OBJ up axis (default y)")
    g.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        help="check the model runs on this runtime; without --model, pick the built-in default of its type",
    )
    g.add_argument(
        "--threads", type=int_in("--threads", 1, 1024), default=None, metavar="N",
        help="CPU threads for the network (default: the runtime's choice)",
    )  # fmt: skip
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
    g.add_argument(
        "--erosion", choices=LEVELS, default="off",
        help="erode the generated relief (rivers, talus, sediment) and write flow.png, deposition.png, "
        "wear.png beside the splat maps; default off (docs/EROSION.md)",
    )  # fmt: skip
    g.add_argument(
        "--erosion-steps", type=int_in("--erosion-steps", 0, 1000), default=None, metavar="N",
        help="erosion steps instead of the level's own (expert)",
    )  # fmt: skip
    g.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    i = sub.add_parser("info", help="print a model's metadata")
    i.add_argument("--model", metavar="PATH", help=".onnx or .safetensors model (default: built-in)")
    i.add_argument("--json", action="store_true", help="the full metadata as JSON")
    return p


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
    the exporters' copies (~110 bytes per pixel). Network: a few live activation tensors of the widest
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


def _model_for_runtime(model: str | None, runtime: str | None) -> str | Path | None:
    """The model path to load: ``--model`` checked against ``--runtime``, or the default of that type."""
    from terrain_core.runtime import MODELS_DIR

    suffix = {"onnx": ".onnx", "torch": ".safetensors"}.get(runtime or "")
    if model is not None:
        if suffix and Path(model).suffix != suffix:
            raise CliError(f"--runtime {runtime} needs a {suffix} model file, got {model}")
        return model
    if suffix is None:
        return None
    p = MODELS_DIR / f"default{suffix}"
    if p.is_file() and p.stat().st_size > 0:
        return p
    if runtime == "torch":
        return None  # the untrained stand-in runs on torch
    raise CliError(f"no built-in {suffix} model is shipped; give one with --model")


def cmd_generate(args: argparse.Namespace, out_stream, err_stream) -> int:
    t_start = time.perf_counter()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=out_stream, flush=True))
    out_dir = Path(args.out)
    if args.tile is None and args.overlap is not None:
        raise CliError("--overlap needs --tile N")
    if args.erosion == "off" and args.erosion_steps:
        raise CliError("--erosion-steps needs --erosion light, medium or strong")
    # The output folder is checked and locked before any work, and stays locked until the files are in.
    try:
        out = OutputSet(out_dir, what="--out").open()
    except OutputPathError as e:
        raise CliError(str(e)) from None
    try:
        return _generate(args, out, say, t_start, out_stream, err_stream)
    finally:
        out.close()


def _generate(args: argparse.Namespace, out: OutputSet, say, t_start: float, out_stream, err_stream) -> int:
    from terrain_core import imageio
    from terrain_core.runtime import ModelFileError, RuntimeUnavailableError, TerrainGenerator

    out_dir = out.folder

    t0 = time.perf_counter()
    try:
        labels = imageio.read_label_map(args.labels)
    except LabelMapError as e:
        raise CliError(str(e)) from None
    t_read = time.perf_counter() - t0
    src_h, src_w = labels.shape
    width, height = args.size if args.size else (src_w, src_h)

    model_path = _model_for_runtime(args.model, args.runtime)
    try:
        gen = TerrainGenerator.load(model_path, device=args.device, threads=args.threads)
    except (ModelFileError, RuntimeUnavailableError) as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(f"--model: {e}") from None

    # Tiling as the runtime will do it (automatic above its tile size), then the memory check: before
    # the resize, so that a huge --size is refused without allocating it.
    if args.tile is None:
        eff_tile = gen.tile_size if max(width, height) > gen.tile_size else None
    else:
        eff_tile = args.tile or None
    need = estimate_memory_bytes(gen.config, width, height, eff_tile)
    limit = args.max_memory * 1e9 if args.max_memory else available_memory_bytes()
    if limit is not None and need > 0.9 * limit:
        have = f"the {_fmt_bytes(limit)} " + ("allowed by --max-memory" if args.max_memory else "available")
        if eff_tile is None:
            raise CliError(
                f"a {width}x{height} map without tiling needs about {_fmt_bytes(need)} of memory, more than "
                f"{have}; use --tile 512 (or a smaller --size)"
            )
        raise CliError(
            f"a {width}x{height} map needs about {_fmt_bytes(need)} of memory even in {eff_tile}-pixel "
            f"tiles, more than {have}; use a smaller --size"
        )
    if (width, height) != (src_w, src_h):
        labels = resize_nearest(labels, height, width)

    model_desc = gen.name + (
        " (untrained weights: the output is noise-like, not terrain)" if gen.untrained else ""
    )
    say(f"map: {args.labels} ({src_w}x{src_h}" + (f", resized to {width}x{height})" if args.size else ")"))
    say(f"model: {model_desc} [{gen.runtime}, {gen.device}]")
    t0 = time.perf_counter()
    try:
        result = gen.generate(
            labels,
            seed=args.seed,
            tile=args.tile,
            overlap=args.overlap,  # None: the runtime's default, at most half the tile
            progress=_Progress(args.quiet or not err_stream.isatty(), err_stream),
        )
    except (LabelMapError, ValueError) as e:
        raise CliError(str(e)) from None
    except MemoryError:
        raise CliError(
            f"out of memory generating {width}x{height}; use --tile 512 or a smaller --size"
        ) from None
    t_generate = time.perf_counter() - t0
    if not np.isfinite(result.height).all():
        where = args.model or "the built-in model"
        raise CliError(f"{where}: the model produced NaN or infinite heights; its weights are broken")
    masks, erosion_meta = _erode(result, args, say)

    info = gen.info
    extra = {
        "inputs": {
            "labels": str(Path(args.labels).resolve()),
            "labels_size": [src_w, src_h],
            "size": [width, height],
            "resized": bool(args.size and (width, height) != (src_w, src_h)),
            "class_shares": class_shares(labels),
        },
        "model_info": {
            k: info.get(k)
            for k in ("name", "path", "runtime", "device", "untrained", "terrain_core_version", "created")
        },
        "generation": {"tile": args.tile, "overlap": args.overlap, "seed": args.seed},
        "command": " ".join([PROG, *args.argv]),
        "timings": {"read_map": t_read, "generate": t_generate},
    }
    if erosion_meta is not None:
        extra["erosion"] = erosion_meta
    formats = args.format or outputs.DEFAULT_FORMATS
    # The mesh grid (pixels, or corners with --plus-one) and its step: by size, unless asked for.
    mesh_h, mesh_w = (height + 1, width + 1) if args.plus_one else (height, width)
    if args.obj_step is not None:
        obj_step = args.obj_step
    elif args.format is not None:  # obj named in an explicit --format: the full mesh, as asked
        obj_step = 1
    else:
        obj_step = outputs.mesh_step(mesh_h, mesh_w)
    t0 = time.perf_counter()
    try:
        files = outputs.write_outputs(
            result,
            out,
            formats,
            plus_one=args.plus_one,
            engine=args.engine,
            size_m=args.size_m,
            cell_size_m=args.cell_size,
            obj_step=obj_step,
            obj_up_axis=args.obj_up,
            extra_meta=extra,
            masks=masks,
        )
    except (outputs.ExportError, ValueError) as e:
        raise CliError(str(e)) from None
    except MemoryError:
        raise CliError(f"out of memory writing the {width}x{height} outputs; use a smaller --size") from None
    t_write = time.perf_counter() - t0

    lo, hi = result.height_range_m
    h_min, h_max = (
        lo + (float(v) + 1.0) * 0.5 * (hi - lo) for v in (result.height.min(), result.height.max())
    )
    say(f"height: {h_min:.1f} .. {h_max:.1f} m (model range {lo:g} .. {hi:g} m)")
    if "obj" in formats and obj_step > 1:
        kept = [len(objmesh.grid_indices(n, obj_step)) for n in (mesh_w, mesh_h)]
        say(
            f"mesh: reduced to every {_ordinal(obj_step)} sample, {kept[0]}x{kept[1]} of {mesh_w}x{mesh_h} "
            "vertices" + (" (--obj-step 1 for the full mesh)" if args.obj_step is None else "")
        )
    if args.engine:
        nw, nh = outputs.engine_grid(args.engine, width, height)
        say(
            f"heights: {nw}x{nh} samples, {args.engine.capitalize()}'s recommended size "
            "(import settings: engine_import in meta.json)"
        )
    if "obj" in formats and "texture" not in formats:
        say("note: terrain.mtl refers to texture.png, which was not written (add texture to --format)")
    say(f"wrote {len(files)} files to {out_dir.resolve()}:")
    for name, path in files.items():
        say(f"  {name:<12} {_fmt_bytes(path.stat().st_size):>10}")
    say(
        f"time: read {t_read:.2f} s, generate {t_generate:.2f} s, write {t_write:.2f} s, "
        f"total {time.perf_counter() - t_start:.2f} s"
    )
    return EXIT_OK


def _erode(result, args: argparse.Namespace, say) -> tuple[dict | None, dict | None]:
    """Erode ``result`` in place of its height when ``--erosion`` asks; the masks and meta.json's entry."""
    if args.erosion == "off":
        return None, None
    from terrain_core import erosion

    h, w = result.size
    cell = args.size_m / w if args.size_m else args.cell_size or outputs.DEFAULT_CELL_SIZE_M
    try:
        eroded = erosion.erode(
            result.height_m,
            result.labels,
            strength=args.erosion,
            iterations=args.erosion_steps,
            cell_size_m=float(cell),
            seed=args.seed,
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
        f"erosion: {args.erosion}, {eroded.settings['steps']} steps in {eroded.seconds:.2f} s; "
        f"{b['eroded_m3'] / 1e6:.1f} million m3 moved, {b['outflow_m3'] / 1e6:.1f} out to water and edges"
    )
    meta = {
        "level": args.erosion,
        "cell_size_m": float(cell),
        "seed": args.seed,
        "settings": eroded.settings,
        "balance_m3": b,
        "masks": encodings if "splat" in args.format else {},
    }
    return (images if "splat" in args.format else None), meta


def cmd_info(args: argparse.Namespace, out_stream, err_stream) -> int:
    from terrain_core.config import ShadowConfig, preset
    from terrain_core.model_format import build_metadata
    from terrain_core.runtime import (
        UNTRAINED_PRESET,
        ModelFileError,
        RuntimeUnavailableError,
        default_model_path,
        read_model_metadata,
    )

    path = Path(args.model) if args.model else default_model_path()
    try:
        if path is None:  # what `generate` uses without a shipped model (built without torch here)
            meta = build_metadata(
                preset(UNTRAINED_PRESET),
                ShadowConfig(),
                name=f"untrained-{UNTRAINED_PRESET}",
                provenance={"untrained": True, "preset": UNTRAINED_PRESET, "init_seed": 0},
                created="",
            )
            meta["path"] = None
            meta["created"] = ""  # made on the fly, not a file with a date
        else:
            meta = dict(read_model_metadata(path))
            meta["path"] = str(path)
    except (ModelFileError, RuntimeUnavailableError) as e:
        raise CliError(str(e)) from None
    if args.json:
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
                args.argv = argv
            except SystemExit as e:  # --help (0)
                return int(e.code or 0)
            if args.command is None:
                parser.print_help(out_stream)
                return EXIT_USAGE
            if args.command == "generate":
                return cmd_generate(args, out_stream, err_stream)
            return cmd_info(args, out_stream, err_stream)
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
