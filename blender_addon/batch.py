"""Headless batch: class map images in, terrain files (and preview renders) out.

    blender -b --python blender_addon/batch.py -- --input maps/ --out out/ [options]
    python blender_addon/batch.py -- --input maps/ --out out/ [options]        (with the bpy module)

For every map and seed: generate, build the terrain object, write the chosen formats into
OUT/<map name>/seed_<seed>/, optionally render a Cycles CPU preview, and record what happened in
OUT/summary.json. Each map and seed's files appear all at once or not at all (an earlier run's files stay
as they were when a re-run fails); one batch at a time writes into OUT. A map that fails is reported and
the others continue. Exit status: 0 all done; 1 some maps failed; 2 bad arguments, an unusable --out, no
maps or an unsupported Blender (one line on stderr, nothing written); 130/143 interrupted/terminated.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

MIN_BLENDER = (4, 2, 0)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".tga", ".exr", ".webp"}
FORMATS = ("blend", "obj", "glb", "png", "exr")


def script_args(argv: list[str]) -> list[str]:
    """The arguments after ``--`` (Blender keeps its own before it); all of them if there is no ``--``."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


class BatchUsageError(Exception):
    """A bad argument or an unusable Blender: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print its usage block too)
        raise BatchUsageError(f"{message} (see batch.py --help)")


def parse_args(args: list[str]) -> argparse.Namespace:
    from terrain_core.argtypes import int_in, positive_float
    from terrain_core.imageio import MIN_SIDE
    from terrain_core.noise import check_seed

    p = _Parser(
        prog="batch.py",
        description="Generate terrain from class map images headless (Blender 4.2+ or the bpy module).",
    )
    p.add_argument("--input", "-i", nargs="+", required=True, help="map images and/or folders of them")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--seed", type=int_in("--seed", 0), default=0, help="seed (default 0)")
    p.add_argument("--seeds", default="", help="several seeds: '1,2,5' or a range '0-3' (overrides --seed)")
    p.add_argument(
        "--model", default="", help=".onnx or .safetensors model file (default: the built-in model)"
    )
    p.add_argument(
        "--formats", default="blend,png", help=f"comma list of {','.join(FORMATS)} (default blend,png)"
    )
    p.add_argument("--render", action="store_true", help="render a Cycles CPU preview PNG per map and seed")
    p.add_argument("--render-size", default="640x400", help="preview size WxH (default 640x400)")
    p.add_argument(
        "--samples", type=int_in("--samples", 1), default=16,
        help="Cycles samples for previews (default 16)",
    )  # fmt: skip
    p.add_argument(
        "--show-map", action="store_true", help="previews show the class map on a plane west of the terrain"
    )
    p.add_argument(
        "--contact-sheet", action="store_true", help="also write OUT/contact_sheet.png of all previews"
    )
    p.add_argument(
        "--resolution", type=int_in("--resolution", MIN_SIDE, zero_ok=True), default=256,
        help="generation resolution, pixels (0 = the map's)",
    )  # fmt: skip
    p.add_argument(
        "--mesh-resolution", type=int_in("--mesh-resolution", 2, zero_ok=True), default=0,
        help="mesh vertices along the longer side (0 = by size: one per generated pixel up to 1024 "
        "pixels, above that 1025, the mesh vertex budget of terrain_core.outputs)",
    )  # fmt: skip
    p.add_argument(
        "--size-m", type=positive_float("--size-m"), default=200.0,
        help="terrain size along the longer side, metres",
    )  # fmt: skip
    p.add_argument("--height-m", default="0,40", help="height range 'LO,HI' or the relief 'HI' in metres")
    p.add_argument(
        "--tile", type=int_in("--tile", -1), default=-1,
        help="tile size in pixels (-1 automatic, 0 never)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int_in("--threads", 0), default=0,
        help="CPU threads for the runtime (0 = all)",
    )  # fmt: skip
    p.add_argument(
        "--erosion", choices=("off", "light", "medium", "strong"), default="off",
        help="erode the relief (docs/EROSION.md); writes flow/deposition/wear.png with the png format",
    )  # fmt: skip
    p.add_argument(
        "--runtime", choices=("AUTO", "ONNX", "TORCH"), default="AUTO", help="runtime of the built-in model"
    )
    ns = p.parse_args(args)
    if ns.tile > 0 and ns.tile < 32:
        p.error(f"argument --tile: must be -1, 0 or at least 32, got {ns.tile}")
    try:
        ns.seed_list = parse_seeds(ns.seeds) if ns.seeds else [ns.seed]
        for seed in ns.seed_list:  # refused here, before any map is read, not in the middle of the batch
            check_seed(seed, "--seed")
        ns.format_set = parse_formats(ns.formats)
        ns.height_range = parse_height(ns.height_m)
        w, _, h = ns.render_size.lower().partition("x")
        try:
            ns.render_wh = (int(w), int(h))
        except ValueError:
            raise ValueError(f"--render-size must be WxH like 640x400, got {ns.render_size!r}") from None
        if min(ns.render_wh) < 16:
            raise ValueError("--render-size must be at least 16x16")
        if ns.samples < 1:
            raise ValueError("--samples must be at least 1")
    except ValueError as e:
        p.error(str(e))
    return ns


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


def default_mesh_resolution(gen_side: int) -> int:
    """Mesh vertices along the longer side when not given: 0 (one per pixel) up to
    ``outputs.MESH_FULL_MAX_SIDE`` pixels, else as many as keep a square mesh within the vertex budget."""
    from terrain_core import outputs

    if gen_side <= outputs.MESH_FULL_MAX_SIDE:
        return 0
    return math.isqrt(outputs.MESH_VERTEX_BUDGET)


def collect_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
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


# ------------------------------------------------------------------------------------------- Blender


def check_blender(bpy) -> str | None:
    v = tuple(bpy.app.version)
    if v < MIN_BLENDER:
        return (
            f"Blender {'.'.join(map(str, v))} is too old: this script needs Blender "
            f"{'.'.join(map(str, MIN_BLENDER))} or newer (extensions, the mesh attribute API)."
        )
    return None


def import_addon():
    """The add-on package this script belongs to, imported by its folder name (``blender_addon`` in the
    source tree, the extension's id when installed); its parent folder goes on sys.path for that."""
    return importlib.import_module(_addon_dir_on_path().name)


def _addon_dir_on_path() -> Path:
    pkg_dir = Path(__file__).resolve().parent
    if str(pkg_dir.parent) not in sys.path:
        sys.path.insert(0, str(pkg_dir.parent))
    return pkg_dir


def new_scene(bpy):
    """An empty scene for one map: nothing of the previous map survives into the next .blend."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def add_map_plane(bpy, scene, labels, size_m: float, x_offset: float, z: float):
    """A flat plane showing the class map (nearest-pixel, unlit), west of the terrain in previews."""
    import numpy as np

    from terrain_core.labels import PALETTE

    h, w = labels.shape
    sx, sy = (size_m, size_m * h / w) if w >= h else (size_m * w / h, size_m)
    me = bpy.data.meshes.new("Class map")
    me.from_pydata(
        [(-sx / 2, -sy / 2, 0), (sx / 2, -sy / 2, 0), (sx / 2, sy / 2, 0), (-sx / 2, sy / 2, 0)],
        [],
        [(0, 1, 2, 3)],
    )
    me.uv_layers.new(name="UVMap").uv.foreach_set("vector", np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32))
    img = bpy.data.images.new("Class map", width=w, height=h, alpha=False)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = PALETTE[labels] / 255.0
    img.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    img.pack()
    mat = bpy.data.materials.new("Class map")
    if mat.node_tree is None:
        mat.use_nodes = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        if n.type != "OUTPUT_MATERIAL":
            nt.nodes.remove(n)
    out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation = img, "Closest"
    emit = nt.nodes.new("ShaderNodeEmission")  # the map's colours as painted, unlit
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    me.materials.append(mat)
    ob = bpy.data.objects.new("Class map", me)
    ob.location = (x_offset, 0.0, z)
    scene.collection.objects.link(ob)
    return ob


def setup_render(
    bpy, scene, ob, size_m: float, height_range, wh, samples: int, *, extra_width: float = 0.0
) -> None:
    """Camera framed on the terrain from the south, sun from the north-west, small Cycles CPU settings.

    ``extra_width``: metres of scene west of the terrain (the class map plane) that must be in frame too.
    """
    from mathutils import Vector

    lo, hi = height_range
    target = Vector((-extra_width / 2.0, 0.0, (lo + hi) / 2.0)) + ob.matrix_world.translation
    radius = math.sqrt(((size_m + extra_width) / 2) ** 2 + (size_m / 2) ** 2 + ((hi - lo) / 2) ** 2)
    cam_data = bpy.data.cameras.new("Preview camera")
    cam_data.lens = 35.0
    cam_data.clip_end = max(1000.0, radius * 10)
    cam = bpy.data.objects.new("Preview camera", cam_data)
    scene.collection.objects.link(cam)
    # From the south-south-west; from due south when the map plane stands beside the terrain.
    elev, az = math.radians(38.0), math.radians(185.0 if extra_width else 200.0)
    fov = min(cam_data.angle_x, cam_data.angle_y) if wh[0] >= wh[1] else cam_data.angle_x
    dist = radius / math.sin(fov / 2) * 0.75  # the bounding sphere is loose: the grid is flat-ish
    offset = Vector((math.sin(az) * math.cos(elev), math.cos(az) * math.cos(elev), math.sin(elev))) * dist
    cam.location = target + offset
    cam.rotation_euler = (-offset).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    sun_data = bpy.data.lights.new("Sun", "SUN")
    sun_data.energy = 3.5
    sun_data.angle = math.radians(2.0)
    sun = bpy.data.objects.new("Sun", sun_data)
    scene.collection.objects.link(sun)
    s_az, s_el = math.radians(315.0), math.radians(35.0)
    to_light = Vector((math.sin(s_az) * math.cos(s_el), math.cos(s_az) * math.cos(s_el), math.sin(s_el)))
    sun.rotation_euler = (-to_light).to_track_quat("-Z", "Y").to_euler()
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:
        world.use_nodes = True
    bg = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
    if bg is not None:
        bg.inputs["Color"].default_value = (0.55, 0.65, 0.8, 1.0)
        bg.inputs["Strength"].default_value = 0.6
    r = scene.render
    r.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 2
    r.resolution_x, r.resolution_y = wh
    r.resolution_percentage = 100
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    r.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"


def render_preview(bpy, scene, path: Path) -> Path:
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    if not path.is_file():
        raise OSError(f"the renderer did not write {path}")
    return path


def contact_sheet(bpy, previews: list[tuple[str, Path]], out: Path, columns: int = 4):
    """One PNG with all previews in a grid (read through Blender: no Pillow needed)."""
    import numpy as np

    addon = import_addon()
    from terrain_core.output_set import atomic_file
    from terrain_core.rasterfiles import array_rows, write_png
    from terrain_core.result import to_uint8

    build = importlib.import_module(addon.__name__ + ".blender.build")
    tiles = []
    for _name, p in previews:
        img = bpy.data.images.load(str(p), check_existing=False)
        try:
            tiles.append(build.image_array(img)[..., :3].copy())
        finally:
            bpy.data.images.remove(img)
    if not tiles:
        return None
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    gap = 4
    sheet = np.ones((rows * th + (rows + 1) * gap, cols * tw + (cols + 1) * gap, 3), np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + t.shape[0], x : x + t.shape[1]] = t
    with atomic_file(out) as tmp:
        write_png(tmp, array_rows(to_uint8(sheet)))
    return out


def process_one(bpy, addon, ns, map_path: Path, seed: int, out_dir: Path) -> dict:
    """Generate, build, export and render one map + seed; returns its summary entry (raises on failure).

    The files go into ``out_dir`` as one output set: all of them at the end, or (on any failure) none,
    with an earlier run's files there left as they were."""
    from terrain_core.output_set import OutputSet

    with OutputSet(out_dir) as out:
        meta = _process_into(bpy, addon, ns, map_path, seed, out.dir)
        out.commit()
    return meta


def _process_into(bpy, addon, ns, map_path: Path, seed: int, out_dir: Path) -> dict:
    pipeline = importlib.import_module(addon.__name__ + ".core.pipeline")
    build = importlib.import_module(addon.__name__ + ".blender.build")
    export = importlib.import_module(addon.__name__ + ".blender.export_ops")
    paint = importlib.import_module(addon.__name__ + ".blender.paint")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    scene = new_scene(bpy)
    labels = paint.read_map_file(str(map_path))
    timings["read_map"] = time.perf_counter() - t
    req = pipeline.GenerateRequest(
        labels=labels,
        seed=seed,
        model_path=str(Path(ns.model).resolve()) if ns.model else "",
        runtime=ns.runtime,
        threads=ns.threads,
        resolution=ns.resolution,
        mesh_resolution=ns.mesh_resolution or default_mesh_resolution(ns.resolution or max(labels.shape)),
        size_m=ns.size_m,
        height_min_m=ns.height_range[0],
        height_max_m=ns.height_range[1],
        tile=None if ns.tile < 0 else ns.tile,
        erosion=ns.erosion,
    )
    outcome = pipeline.run_generation(req)
    timings.update({k: v for k, v in outcome.timings.items() if k != "worker_total"})
    t = time.perf_counter()
    ob, btimes = build.build_terrain(
        outcome,
        build.BuildOptions(
            name=map_path.stem,
            height_min_m=req.height_min_m,
            height_max_m=req.height_max_m,
            metadata=dict(
                seed=seed,
                model=outcome.model_name,
                map_checksum=outcome.checksum,
                map_file=str(map_path),
                size_m=req.size_m,
                height_min_m=req.height_min_m,
                height_max_m=req.height_max_m,
                erosion=req.erosion,
            ),
            pack="blend" in ns.format_set,
        ),
        scene,
    )
    timings["build"] = time.perf_counter() - t
    files: dict[str, Path] = {}
    t = time.perf_counter()
    res = outcome.result
    if "png" in ns.format_set or "exr" in ns.format_set:
        files.update(
            export.write_maps(
                out_dir,
                height_m=outcome.height_m,
                height_range_m=ns.height_range,
                texture=res.texture if "png" in ns.format_set else None,
                shaded=res.shaded if "png" in ns.format_set else None,
                labels=res.labels if "png" in ns.format_set else None,
                height=True,
                splats="png" in ns.format_set,
                masks=outcome.masks,
            )
        )
        if "png" not in ns.format_set:  # exr only: drop the 16-bit PNG written beside it
            files.pop("height.png").unlink()
        elif "exr" not in ns.format_set:
            files.pop("height.exr").unlink()
    timings["write_images"] = time.perf_counter() - t
    t = time.perf_counter()
    files.update(
        export.export_mesh_files(
            bpy.context, ob, out_dir, obj="obj" in ns.format_set, glb="glb" in ns.format_set
        )
    )
    timings["write_meshes"] = time.perf_counter() - t
    if ns.render:
        t = time.perf_counter()
        extra = 0.0
        if ns.show_map:
            gap = 0.08 * ns.size_m
            add_map_plane(bpy, scene, res.labels, ns.size_m, -(ns.size_m + gap), ns.height_range[0])
            extra = ns.size_m + gap
        setup_render(bpy, scene, ob, ns.size_m, ns.height_range, ns.render_wh, ns.samples, extra_width=extra)
        files["preview.png"] = render_preview(bpy, scene, out_dir / "preview.png")
        timings["render"] = time.perf_counter() - t
    if "blend" in ns.format_set:
        t = time.perf_counter()
        p = out_dir / "terrain.blend"  # in the staging folder: no earlier file, so no .blend1 backup
        bpy.ops.wm.save_as_mainfile(filepath=str(p), compress=True, copy=True)
        if not p.is_file():
            raise OSError(f"Blender did not write {p.name}")
        files["terrain.blend"] = p
        timings["write_blend"] = time.perf_counter() - t
    meta = {
        "map": str(map_path),
        "seed": seed,
        "model": outcome.model_name,
        "untrained_model": bool(outcome.model_info.get("untrained")),
        "map_checksum": outcome.checksum,
        "generation_size": [int(res.size[1]), int(res.size[0])],
        "mesh_vertices": outcome.grid.num_vertices,
        "mesh_reduced": req.mesh_resolution != 0 and ns.mesh_resolution == 0,
        "size_m": ns.size_m,
        "height_range_m": list(ns.height_range),
        "height_m_min_max": [float(outcome.height_m.min()), float(outcome.height_m.max())],
        "erosion": outcome.erosion or {"level": "off"},
        "files": sorted(files),
        "timings_s": {k: round(v, 4) for k, v in {**timings, **btimes}.items()},
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit status (module docstring; ``terrain_core.exits``)."""
    _addon_dir_on_path()  # terrain_core sits beside the add-on in the source tree
    from terrain_core.exits import (
        EXIT_INTERRUPTED,
        EXIT_TERMINATED,
        EXIT_USAGE,
        Terminated,
        sigterm_unwinds,
        silence_stdout,
    )
    from terrain_core.output_set import OutputPathError

    try:
        with sigterm_unwinds():
            return _run(argv)
    except BatchUsageError as e:
        print(f"batch.py: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OutputPathError as e:
        print(f"batch.py: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return silence_stdout()
    except KeyboardInterrupt:
        print("batch.py: interrupted (finished maps are kept; nothing is half-written)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("batch.py: terminated (finished maps are kept; nothing is half-written)", file=sys.stderr)
        return EXIT_TERMINATED


def _run(argv: list[str] | None) -> int:
    import bpy

    from terrain_core.exits import one_line
    from terrain_core.output_set import OutputLock, check_output_dir, write_text_atomic

    msg = check_blender(bpy)
    if msg:
        raise BatchUsageError(msg)
    ns = parse_args(script_args(sys.argv if argv is None else ["batch.py", "--", *argv]))
    out = check_output_dir(ns.out, "--out")
    addon = import_addon()
    maps, input_errors = collect_inputs(ns.input)
    if not maps:
        for e in input_errors:
            print(f"batch.py: {e}", file=sys.stderr)
        raise BatchUsageError("nothing to do (no map images found)")
    out.mkdir(parents=True, exist_ok=True)
    # One batch at a time per output folder: the summary then always agrees with the files.
    with OutputLock(out):
        for e in input_errors:
            print(f"batch.py: {e}", file=sys.stderr)
        return _run_maps(bpy, addon, ns, out, maps, input_errors, one_line, write_text_atomic)


def _run_maps(bpy, addon, ns, out: Path, maps, input_errors, one_line, write_text_atomic) -> int:
    entries, previews = [], []
    t_all = time.perf_counter()
    for map_path in maps:
        for seed in ns.seed_list:
            out_dir = out / map_path.stem / f"seed_{seed}"
            t0 = time.perf_counter()
            try:
                meta = process_one(bpy, addon, ns, map_path, seed, out_dir)
                entries.append({"ok": True, "out_dir": str(out_dir), **meta})
                if "preview.png" in meta["files"]:
                    previews.append((f"{map_path.stem} {seed}", out_dir / "preview.png"))
                steps = ", ".join(f"{k} {v:.2f}s" for k, v in meta["timings_s"].items() if k != "build_total")
                print(
                    f"[ok]   {map_path.name} seed {seed} -> {out_dir} "
                    f"({time.perf_counter() - t0:.1f} s: {steps})"
                )
            except Exception as e:
                known = isinstance(e, (ValueError, OSError, RuntimeError))
                if not known:
                    traceback.print_exc()
                reason = one_line(e)
                error = f"{type(e).__name__}: {reason}"
                entries.append({"ok": False, "map": str(map_path), "seed": seed, "error": error})
                print(f"[FAIL] {map_path.name} seed {seed}: {reason}", file=sys.stderr)
    sheet = None
    if ns.contact_sheet and previews:
        try:
            sheet = contact_sheet(bpy, previews, out / "contact_sheet.png")
            print(f"contact sheet: {sheet}")
        except Exception as e:
            print(f"[FAIL] contact sheet: {one_line(e)}", file=sys.stderr)
            input_errors.append(f"contact sheet: {one_line(e)}")
    failed = [e for e in entries if not e["ok"]]
    summary = {
        "ok": not failed and not input_errors,
        "maps": len(maps),
        "runs": len(entries),
        "failed": len(failed),
        "input_errors": input_errors,
        "seconds": round(time.perf_counter() - t_all, 2),
        "contact_sheet": str(sheet) if sheet else None,
        "results": entries,
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    print(
        f"{len(entries) - len(failed)} of {len(entries)} done in {summary['seconds']} s; "
        f"files in {out}/; summary {out / 'summary.json'}"
    )
    return 1 if failed or input_errors else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    import bpy

    if not bpy.app.binary_path:
        # bpy as a Python module (4.2 at least) can crash in its interpreter-exit teardown after a render,
        # turning a good run's status into SIGSEGV; every file is written and closed by now, so leave
        # without the teardown. Inside the Blender binary, exit normally.
        os._exit(code)
    sys.exit(code)
