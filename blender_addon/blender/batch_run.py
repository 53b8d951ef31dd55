"""The headless batch behind ``blender_addon/batch.py`` (usage, outputs and exit codes: its docstring).

For every map and seed: a fresh scene, generate, build the terrain object, write the chosen formats and
meta.json into OUT/<map name>/seed_<seed>/ as one output set, optionally render a preview; then the
contact sheet and OUT/summary.json. Only ``main`` sees the command line; the rest takes ``BatchOptions``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import bpy

from terrain_core.exits import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    one_line,
    sigterm_unwinds,
    silence_stdout,
)
from terrain_core.output_set import (
    OutputLock,
    OutputPathError,
    OutputSet,
    check_output_dir,
    write_text_atomic,
)

from ..core.batch_options import (
    BatchOptions,
    BatchUsageError,
    collect_inputs,
    default_mesh_resolution,
    parse_args,
    script_args,
)
from ..core.object_meta import object_metadata
from ..core.pipeline import GenerateOutcome, GenerateRequest, run_generation
from . import render
from .build import BuildOptions, build_terrain
from .export_ops import export_mesh_files, write_maps
from .paint import read_map_file

# ------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit status (``blender_addon/batch.py``; ``terrain_core.exits``)."""
    try:
        with sigterm_unwinds():
            return _run(argv)
    except (BatchUsageError, OutputPathError) as e:
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


def exit_process(code: int) -> None:
    """Leave the process with ``code``.

    bpy as a Python module (4.2 at least) can crash in its interpreter-exit teardown after a render,
    turning a good run's status into SIGSEGV; every file is written and closed by now, so leave without
    the teardown. Inside the Blender binary, exit normally."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not bpy.app.binary_path:
        os._exit(code)
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    opts = parse_args(script_args(sys.argv if argv is None else ["batch.py", "--", *argv]))
    out = check_output_dir(opts.out, "--out")
    maps, input_errors = collect_inputs(opts.inputs)
    if not maps:
        for e in input_errors:
            print(f"batch.py: {e}", file=sys.stderr)
        raise BatchUsageError("nothing to do (no map images found)")
    out.mkdir(parents=True, exist_ok=True)
    # One batch at a time per output folder: the summary then always agrees with the files.
    with OutputLock(out):
        for e in input_errors:
            print(f"batch.py: {e}", file=sys.stderr)
        return run_batch(opts, out, maps, input_errors)


# ------------------------------------------------------------------------------------- the batch


def run_batch(opts: BatchOptions, out: Path, maps: list[Path], input_errors: list[str]) -> int:
    """Every map with every seed (a failed one is reported, the others go on), the contact sheet and
    OUT/summary.json; returns the exit status: 0 all done, 1 something failed."""
    t_all = time.perf_counter()
    entries, previews = [], []
    for map_path in maps:
        for seed in opts.seeds:
            entry = _run_one(opts, map_path, seed, out / map_path.stem / f"seed_{seed}")
            entries.append(entry)
            if entry["ok"] and "preview.png" in entry["files"]:
                previews.append((f"{map_path.stem} {seed}", Path(entry["out_dir"]) / "preview.png"))
    sheet = None
    if opts.contact_sheet and previews:
        try:
            sheet = render.contact_sheet(previews, out / "contact_sheet.png")
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


def _run_one(opts: BatchOptions, map_path: Path, seed: int, out_dir: Path) -> dict:
    """One map and seed, reported on the console; its summary entry (``ok`` False with the error)."""
    t0 = time.perf_counter()
    try:
        meta = process_one(opts, map_path, seed, out_dir)
    except Exception as e:
        if not isinstance(e, (ValueError, OSError, RuntimeError)):
            traceback.print_exc()
        reason = one_line(e)
        print(f"[FAIL] {map_path.name} seed {seed}: {reason}", file=sys.stderr)
        return {"ok": False, "map": str(map_path), "seed": seed, "error": f"{type(e).__name__}: {reason}"}
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in meta["timings_s"].items() if k != "build_total")
    print(f"[ok]   {map_path.name} seed {seed} -> {out_dir} ({time.perf_counter() - t0:.1f} s: {steps})")
    return {"ok": True, "out_dir": str(out_dir), **meta}


def process_one(opts: BatchOptions, map_path: Path, seed: int, out_dir: Path) -> dict:
    """Generate, build, export and render one map + seed; returns its meta.json (raises on failure).

    The files go into ``out_dir`` as one output set: all of them at the end, or (on any failure) none,
    with an earlier run's files there left as they were."""
    with OutputSet(out_dir) as out:
        meta = _process_into(opts, map_path, seed, out.dir)
        out.commit()
    return meta


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str):
    t = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t


def _process_into(opts: BatchOptions, map_path: Path, seed: int, out_dir: Path) -> dict:
    """The steps of one map + seed, each timed, writing into ``out_dir`` (the output set's staging)."""
    timings: dict[str, float] = {}
    with _timed(timings, "read_map"):
        scene = new_scene()
        labels = read_map_file(str(map_path))
    req = batch_request(opts, labels, seed)
    outcome = run_generation(req)
    timings.update({k: v for k, v in outcome.timings.items() if k != "worker_total"})
    with _timed(timings, "build"):
        ob, build_times = build_terrain(
            outcome,
            BuildOptions(
                name=map_path.stem,
                height_min_m=req.height_min_m,
                height_max_m=req.height_max_m,
                metadata=object_metadata(req, outcome, map_file=str(map_path)),
                pack="blend" in opts.formats,
            ),
            scene,
        )
    files: dict[str, Path] = {}
    with _timed(timings, "write_images"):
        files.update(write_images(opts, outcome, out_dir))
    with _timed(timings, "write_meshes"):
        obj, glb = "obj" in opts.formats, "glb" in opts.formats
        files.update(export_mesh_files(bpy.context, ob, out_dir, obj=obj, glb=glb))
    if opts.render:
        with _timed(timings, "render"):
            files["preview.png"] = render_preview(opts, scene, ob, outcome.result.labels, out_dir)
    if "blend" in opts.formats:
        with _timed(timings, "write_blend"):
            files["terrain.blend"] = save_blend(out_dir)
    meta = {
        "map": str(map_path),
        **run_meta(opts, req, outcome),
        "files": sorted(files),
        "timings_s": {k: round(v, 4) for k, v in {**timings, **build_times}.items()},
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


# ------------------------------------------------------------------------------------- the steps


def new_scene():
    """An empty scene for one map: nothing of the previous map survives into the next .blend.

    The factory startup data, emptied, but not the factory preferences: ``read_factory_settings`` would
    also disable every extension, and Blender then deletes a disabled extension's wheels (onnxruntime,
    terrain_core) from its site-packages, under a batch that runs on them."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    return bpy.context.scene


def batch_request(opts: BatchOptions, labels, seed: int) -> GenerateRequest:
    """The generate request of one map + seed (a large map gets a reduced mesh unless told otherwise)."""
    mesh_resolution = opts.mesh_resolution or default_mesh_resolution(opts.resolution or max(labels.shape))
    return GenerateRequest(
        labels=labels,
        seed=seed,
        model_path=str(Path(opts.model).resolve()) if opts.model else "",
        runtime=opts.runtime,
        threads=opts.threads,
        resolution=opts.resolution,
        mesh_resolution=mesh_resolution,
        size_m=opts.size_m,
        height_min_m=opts.height_range[0],
        height_max_m=opts.height_range[1],
        tile=None if opts.tile < 0 else opts.tile,
        erosion=opts.erosion,
    )


def write_images(opts: BatchOptions, outcome: GenerateOutcome, out_dir: Path) -> dict[str, Path]:
    """The png format: height.png, texture, shaded texture, splat and erosion masks; exr: height.exr."""
    png, exr = "png" in opts.formats, "exr" in opts.formats
    if not (png or exr):
        return {}
    res = outcome.result
    files = write_maps(
        out_dir,
        height_m=outcome.height_m,
        height_range_m=opts.height_range,
        texture=res.texture if png else None,
        shaded=res.shaded if png else None,
        labels=res.labels if png else None,
        height_png=png,
        height_exr=exr,
        splats=png,
        masks=outcome.masks,
    )
    return files


def render_preview(opts: BatchOptions, scene, ob, labels, out_dir: Path) -> Path:
    """preview.png of the terrain, with the class map on a plane west of it when asked to."""
    extra = 0.0
    if opts.show_map:
        gap = 0.08 * opts.size_m
        render.add_map_plane(scene, labels, opts.size_m, -(opts.size_m + gap), opts.height_range[0])
        extra = opts.size_m + gap
    render.setup_render(
        scene, ob, opts.size_m, opts.height_range, opts.render_size, opts.samples, extra_width=extra
    )
    return render.render_still(scene, out_dir / "preview.png")


def save_blend(out_dir: Path) -> Path:
    p = out_dir / "terrain.blend"  # in the staging folder: no earlier file, so no .blend1 backup
    bpy.ops.wm.save_as_mainfile(filepath=str(p), compress=True, copy=True)
    if not p.is_file():
        raise OSError(f"Blender did not write {p.name}")
    return p


def run_meta(opts: BatchOptions, req: GenerateRequest, outcome: GenerateOutcome) -> dict:
    """What meta.json of one map + seed (also its entry in summary.json) says of the generation, between
    the map's path and the files and timings."""
    res = outcome.result
    return {
        "seed": req.seed,
        "model": outcome.model_name,
        "untrained_model": bool(outcome.model_info.get("untrained")),
        "map_checksum": outcome.checksum,
        "generation_size": [int(res.size[1]), int(res.size[0])],
        "mesh_vertices": outcome.grid.num_vertices,
        "mesh_reduced": req.mesh_resolution != 0 and opts.mesh_resolution == 0,
        "size_m": opts.size_m,
        "height_range_m": list(opts.height_range),
        "height_m_min_max": [float(outcome.height_m.min()), float(outcome.height_m.max())],
        "erosion": outcome.erosion or {"level": "off"},
    }
