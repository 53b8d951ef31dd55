"""build_addon.py: the extension zip is valid, complete and self-contained.

Never downloads: the wheel cache must have been filled by `python build_addon.py --fetch-wheels-only`
(scripts/env.sh does that in its install phase); otherwise these tests skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

import numpy as np  # noqa: E402

import build_addon  # noqa: E402
from blender_addon.core.png import write_png  # noqa: E402
from terrain_core.labels import PALETTE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "linux-x64"


def _cache_ready() -> str | None:
    wd = build_addon.DEFAULT_WHEELS_DIR
    try:
        reqs = build_addon.pinned_requirements()
    except build_addon.BuildError as e:
        return str(e)
    missing = [r for r in reqs if not wd.is_dir() or build_addon.cached_wheel(wd, r, PLATFORM) is None]
    if missing:
        return f"wheel cache {wd} lacks {', '.join(missing)}: run `python build_addon.py --fetch-wheels-only`"
    try:
        build_addon.default_model(None, wd, allow_export=False)
    except build_addon.BuildError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    why = _cache_ready()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--offline", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1 and re.search(r"\(\d+\.\d MiB\)", r.stdout)
    return zips[0]


def test_zip_contents_and_manifest(built_zip):
    with zipfile.ZipFile(built_zip) as z:
        names = set(z.namelist())
        manifest = z.read("blender_manifest.toml").decode()
        core = next(n for n in names if n.startswith("wheels/terrain_gan_core-"))
        with zipfile.ZipFile(__import__("io").BytesIO(z.read(core))) as cw:
            core_names = set(cw.namelist())
    assert 'id = "terrain_gan"' in manifest and 'platforms = ["linux-x64"]' in manifest
    assert 'blender_version_min = "4.2.0"' in manifest and "GPL-3.0-or-later" in manifest
    listed = re.findall(r'"\./wheels/([^"]+)"', manifest)
    assert {w.split("-")[0] for w in listed} == {
        "onnxruntime",
        "flatbuffers",
        "packaging",
        "protobuf",
        "terrain_gan_core",
    }
    assert all(f"wheels/{w}" in names and build_addon.wheel_fits(w, PLATFORM) for w in listed)
    assert (
        "batch.py" in names
        and "core/grid.py" in names
        and not any("training" in n or "tests/" in n for n in names)
    )
    assert "terrain_core/models/default.onnx" in core_names and "terrain_core/runtime.py" in core_names
    # erosion is numpy only: these pure-Python modules are all any platform's zip needs for it
    assert {f"terrain_core/{m}.py" for m in ("erosion", "flow", "flow_metrics")} <= core_names
    assert not any(
        n.startswith(("terrain_core/nn/", "training/")) or n.endswith("cli.py") for n in core_names
    )
    assert not any(n.endswith(".pyc") for n in names | core_names)


def test_wheel_platform_check():
    assert build_addon.wheel_fits("onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl", "linux-x64")
    assert not build_addon.wheel_fits(
        "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl", "windows-x64"
    )
    assert not build_addon.wheel_fits("onnxruntime-1.32.0-cp312-cp312-win_amd64.whl", "windows-x64")
    assert build_addon.wheel_fits("packaging-26.3-py3-none-any.whl", "macos-arm64")
    assert build_addon.wheel_fits("protobuf-7.36.2-cp310-abi3-macosx_10_9_universal2.whl", "macos-arm64")
    assert not build_addon.wheel_fits("protobuf-7.36.2-cp310-abi3-macosx_10_9_universal2.whl", "linux-x64")
    assert build_addon.wheel_fits("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", "linux-x64")
    assert not build_addon.wheel_fits(
        "x-1.0-cp311-cp311-manylinux_2_34_x86_64.whl", "linux-x64"
    )  # too new glibc
    assert not build_addon.wheel_fits("x-1.0-cp311-cp311-manylinux_2_28_aarch64.whl", "linux-x64")


CHILD = textwrap.dedent(
    r'''
    import importlib.abc, importlib.machinery, json, os, sys, time
    zip_path, root = sys.argv[1], os.path.realpath(sys.argv[2])
    # No project source on sys.path: only the environment's site-packages (bpy, numpy) stay.
    here = os.path.realpath(os.getcwd())
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) not in (root, here)]
    BLOCKED = {"onnxruntime", "PIL", "scipy", "safetensors", "torch", "sympy", "terrain_core",
               "blender_addon",
               "flatbuffers", "google", "packaging"}
    user = os.path.realpath(os.environ["BLENDER_USER_RESOURCES"])
    refused = []

    class OnlyFromExtension(importlib.abc.MetaPathFinder):
        """What Blender's own Python lacks may only come from the installed extension's folders."""
        def find_spec(self, name, path, target=None):
            if "." in name or name not in BLOCKED:
                return None  # submodules follow their parent, which was checked
            inside = [p for p in sys.path if p and os.path.realpath(p).startswith(user)]
            spec = importlib.machinery.PathFinder.find_spec(name, inside)
            if spec is None:
                refused.append(name)
                raise ImportError(f"{name!r} refused: not provided by the extension")
            return spec

    sys.meta_path.insert(0, OnlyFromExtension())
    import bpy
    assert not [p for p in sys.path if os.path.realpath(p) == root]
    t0 = time.perf_counter()
    inst = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    t_install = time.perf_counter() - t0
    mod = "bl_ext.user_default.terrain_gan"
    enabled = mod in {a.module for a in bpy.context.preferences.addons}
    win = bpy.context.window_manager.windows[0]
    area = next(a for a in win.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=win, screen=win.screen, area=area, region=region):
        bpy.ops.terrain.new_paint_plane(size=50.0, resolution=32, fill_class="WATER")
        bpy.context.scene.terrain_gan.random_seed = 3
        bpy.ops.terrain.random_map()
        bpy.context.scene.terrain_gan.resolution = 32
        bpy.context.scene.terrain_gan.erosion = "MEDIUM"  # numpy only: nothing beyond the zip either
        t0 = time.perf_counter()
        gen = bpy.ops.terrain.generate()
        t_gen = time.perf_counter() - t0
    ob = bpy.data.objects.get("Terrain")
    made = {  # before the batch below empties the scene
        "vertices": len(ob.data.vertices) if ob else 0,
        "erosion": ob["terrain_gan"].get("erosion") if ob else None,
        "mask_image": bool(ob and ob["terrain_gan"].get("mask_image") in bpy.data.images),
        "prefs_runtime": bpy.context.preferences.addons[mod].preferences.runtime,
    }
    try:  # control: the hook really hides the environment's copies
        import PIL  # noqa: F401
        pil_hidden = False
    except ImportError:
        pil_hidden = True
    # The batch launcher as it lies in the installed extension: it must find its package under the
    # extension's folder name and import the batch from the zip alone (--help stops after parsing).
    import contextlib, io, runpy
    batch = os.path.join(user, "extensions", "user_default", "terrain_gan", "batch.py")
    argv, sys.argv, usage = sys.argv, [batch, "--", "--help"], io.StringIO()
    batch_exit = None
    with contextlib.redirect_stdout(usage):
        try:
            runpy.run_path(batch, run_name="__main__")
        except SystemExit as e:
            batch_exit = e.code
    sys.argv = argv
    batch_run = getattr(sys.modules.get("terrain_gan.blender.batch_run"), "__file__", None)
    # The installed batch on two maps: each map starts from an empty scene, which must not disable the
    # extension (Blender then deletes its wheels from the extension's site-packages under the batch).
    site = os.path.join(user, "extensions", ".local", "lib", "python3.11", "site-packages")
    batch_out = os.path.join(os.path.dirname(sys.argv[3]), "batch-out")
    batch_main = sys.modules["terrain_gan.blender.batch_run"].main
    batch_code = batch_main(["--input", sys.argv[3], "--out", batch_out, "--formats", "png",
                             "--resolution", "32", "--mesh-resolution", "16"])
    batch_summary = json.load(open(os.path.join(batch_out, "summary.json")))
    wheels_after = sorted(os.listdir(site)) if os.path.isdir(site) else []
    print("RESULT " + json.dumps({
        "batch_exit": batch_exit, "batch_usage": usage.getvalue(), "batch_run": batch_run,
        "batch_code": batch_code, "batch_ok": [r["ok"] for r in batch_summary["results"]],
        "wheels_after": wheels_after,
        "enabled_after_batch": mod in {a.module for a in bpy.context.preferences.addons},
        "install": sorted(inst), "t_install": t_install, "enabled": enabled, "generate": sorted(gen),
        "t_generate": t_gen, **made,
        "modules": {
            m: getattr(sys.modules[m], "__file__", None) for m in BLOCKED | {mod} if m in sys.modules
        },
        "refused": refused, "pil_hidden": pil_hidden,
    }))
    '''
)


def test_installed_zip_generates_without_project_or_extra_packages(built_zip, tmp_path):
    user = tmp_path / "blender-user"
    env = dict(os.environ)
    env.update(
        BLENDER_USER_RESOURCES=str(user),
        BLENDER_USER_CONFIG=str(user / "config"),
        BLENDER_USER_SCRIPTS=str(user / "scripts"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONPATH="",
    )
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    maps = tmp_path / "maps"
    maps.mkdir()
    for i, cls in enumerate((1, 5)):
        lab = np.zeros((24, 24), np.uint8)
        lab[4:20, 4:20] = cls
        write_png(maps / f"map{i}.png", PALETTE[lab])
    r = subprocess.run(
        [sys.executable, str(child), str(built_zip), str(ROOT), str(maps)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(line[len("RESULT ") :])
    assert res["install"] == ["FINISHED"] and res["enabled"] and res["generate"] == ["FINISHED"]
    assert res["vertices"] == 32 * 32 and res["prefs_runtime"] == "AUTO"
    assert res["batch_exit"] == 0 and "headless" in res["batch_usage"] and "--input" in res["batch_usage"]
    assert res["batch_run"].startswith(str(user / "extensions" / "user_default" / "terrain_gan"))
    assert res["batch_code"] == 0 and res["batch_ok"] == [True, True]
    assert res["enabled_after_batch"] and "terrain_core" in res["wheels_after"], res["wheels_after"]
    assert res["erosion"] == "medium" and res["mask_image"]  # eroded inside Blender from the zip alone
    assert res["refused"] == ["PIL"] and res["pil_hidden"]  # only the control import was refused
    mods = res["modules"]
    for name in ("onnxruntime", "terrain_core", "bl_ext.user_default.terrain_gan"):
        assert mods[name].startswith(str(user)), (name, mods[name])
    assert not {"torch", "PIL", "scipy", "safetensors"} & set(mods)
