"""Preview renders of a built terrain: camera, sun, sky, small Cycles CPU settings; the contact sheet.

Used by the headless batch (``--render``, ``--contact-sheet``). Main thread only, like all Blender data.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

from terrain_core.result import to_uint8

from ..core.png import write_png
from .build import image_array
from .paint import new_map_image, new_map_plane

MAP_PLANE_NAME = "Class map"


def add_map_plane(scene, labels: np.ndarray, size_m: float, x_offset: float, z: float):
    """The class map on a flat plane (the paint plane's make, unlit: the colours as painted), its longer
    side ``size_m`` like the terrain's, centred at (``x_offset``, 0, ``z``); its image packed into the
    .blend."""
    h, w = labels.shape
    sx, sy = (size_m, size_m * h / w) if w >= h else (size_m * w / h, size_m)
    img = new_map_image(MAP_PLANE_NAME, labels)
    img.pack()
    ob = new_map_plane(MAP_PLANE_NAME, img, sx, sy, unlit=True)
    ob.location = (x_offset, 0.0, z)
    scene.collection.objects.link(ob)
    return ob


def setup_render(
    scene, ob, size_m: float, height_range, wh, samples: int, *, extra_width: float = 0.0
) -> None:
    """Camera framed on the terrain from the south, sun from the north-west, small Cycles CPU settings.

    ``extra_width``: metres of scene west of the terrain (the class map plane) that must be in frame too.
    """
    add_camera(scene, ob, size_m, height_range, wh, extra_width=extra_width)
    add_sun(scene)
    set_sky(scene)
    set_cycles(scene, wh, samples)


def add_camera(scene, ob, size_m: float, height_range, wh, *, extra_width: float = 0.0):
    """A camera on the bounding sphere of the terrain and the map plane west of it, aimed at its middle."""
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
    return cam


def add_sun(scene):
    """A sun from the north-west, 35 degrees up: the direction the learned hill-shading assumes."""
    from mathutils import Vector

    sun_data = bpy.data.lights.new("Sun", "SUN")
    sun_data.energy = 3.5
    sun_data.angle = math.radians(2.0)
    sun = bpy.data.objects.new("Sun", sun_data)
    scene.collection.objects.link(sun)
    s_az, s_el = math.radians(315.0), math.radians(35.0)
    to_light = Vector((math.sin(s_az) * math.cos(s_el), math.cos(s_az) * math.cos(s_el), math.sin(s_el)))
    sun.rotation_euler = (-to_light).to_track_quat("-Z", "Y").to_euler()
    return sun


def set_sky(scene) -> None:
    """A pale blue world that lights the shadows a little."""
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:
        world.use_nodes = True
    bg = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
    if bg is not None:
        bg.inputs["Color"].default_value = (0.55, 0.65, 0.8, 1.0)
        bg.inputs["Strength"].default_value = 0.6


def set_cycles(scene, wh, samples: int) -> None:
    """Cycles on the CPU (fast and reliable headless), few bounces, an 8-bit RGB PNG of ``wh`` pixels."""
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


def render_still(scene, path: Path) -> Path:
    """Render the scene's camera view into ``path`` (PNG, as set up by the preview settings)."""
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    if not path.is_file():
        raise OSError(f"the renderer did not write {path}")
    return path


def contact_sheet(previews: list[tuple[str, Path]], out: Path, columns: int = 4) -> Path | None:
    """One PNG with all previews in a grid (read through Blender: no Pillow needed)."""
    tiles = []
    for _name, p in previews:
        img = bpy.data.images.load(str(p), check_existing=False)
        try:
            tiles.append(image_array(img)[..., :3].copy())
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
    return write_png(out, to_uint8(sheet))
