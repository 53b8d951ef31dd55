"""Shared test set-up: Blender and caches write into a temporary folder, never into $HOME."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_tmp = Path(tempfile.mkdtemp(prefix="terrain-tests-"))
for var, sub in (
    ("BLENDER_USER_RESOURCES", "blender-user"),
    ("BLENDER_USER_CONFIG", "blender-user/config"),
    ("BLENDER_USER_SCRIPTS", "blender-user/scripts"),
    ("XDG_CACHE_HOME", "cache"),
    ("MESA_SHADER_CACHE_DIR", "mesa"),
    ("TORCH_HOME", "torch"),
):
    os.environ.setdefault(var, str(_tmp / sub))
    Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
# Two cores here: keep torch from oversubscribing when tests run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "2")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Property tests draw the same cases on every run (the suite and CI give the same verdict on the same
# code); HYPOTHESIS_PROFILE=explore searches new random cases instead, to look for bugs on purpose.
from hypothesis import settings  # noqa: E402

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def exr_channels(path) -> list[str]:
    """Channel names in an OpenEXR file's header (its chlist attribute)."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x76\x2f\x31\x01", "not an OpenEXR file"
    key = b"channels\x00chlist\x00"
    i = data.index(key) + len(key) + 4  # after the attribute's size
    names = []
    while data[i : i + 1] != b"\x00":
        name = data[i:].partition(b"\x00")[0]
        names.append(name.decode())
        i += len(name) + 1 + 16  # name, NUL, pixel type, pLinear + reserved, x/y sampling
    return names


def view3d_context():
    """A context override on the VIEW_3D area of Blender's background window (operators that poll for a
    3D view need it); only for tests that have imported bpy."""
    import bpy

    win = bpy.context.window_manager.windows[0]
    area = next(a for a in win.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    return bpy.context.temp_override(window=win, screen=win.screen, area=area, region=region)


@contextlib.contextmanager
def addon_scene(map_px: int, size_m: float = 40.0):
    """Factory settings, the add-on registered, a ``map_px`` x ``map_px`` paint plane of water, inside a
    3D-view context; the add-on unregistered afterwards. Only for tests that have imported bpy."""
    import bpy

    import blender_addon

    bpy.ops.wm.read_factory_settings(use_empty=False)
    blender_addon.register()
    with view3d_context():
        bpy.ops.terrain.new_paint_plane(size=size_m, resolution=map_px, fill_class="WATER")
        yield bpy.context.scene
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
    blender_addon.unregister()


def data_snapshot() -> dict[str, list[str]]:
    """The names of every object, mesh, material, image and texture: what a failed or cancelled
    Generate must leave untouched."""
    import bpy

    return {
        kind: sorted(x.name for x in getattr(bpy.data, kind))
        for kind in ("objects", "meshes", "materials", "images", "textures")
    }
