"""Paint side: the paint plane, its class-map image, the palette, a hard brush, and map operations."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from terrain_core.imageio import MAX_SIDE, MIN_SIDE, check_image_file
from terrain_core.labels import CLASSES, PALETTE, LabelMapError, resize_nearest

from ..core import maps
from ..core.classes import CLASS_ITEMS, class_id
from ..core.png import write_png
from .build import image_array

PALETTE_NAME = "Terrain classes"
BRUSH_NAME = "Terrain class brush"
MAP_IMAGE_NAME = "Terrain map"
PLANE_NAME = "Terrain paint plane"


# ---------------------------------------------------------------------------------- map image access


def map_labels(image, *, strict: bool = False) -> np.ndarray:
    """Class ids [H, W] (row 0 = north) of a paint image, every pixel snapped to the palette."""
    if image is None:
        raise LabelMapError("no map image: use 'New paint plane' or 'Load map' first")
    w, h = image.size
    if w == 0 or h == 0:
        raise LabelMapError(f"the map image {image.name!r} has no pixels (its file is missing?)")
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return maps.labels_from_pixels(buf, w, h, strict=strict)


def set_map_labels(image, labels: np.ndarray) -> None:
    """Write a class map into a paint image (resizing the image to the map's size if they differ)."""
    h, w = labels.shape
    if tuple(image.size) != (w, h):
        image.scale(w, h)
    image.pixels.foreach_set(maps.pixels_from_labels(labels))
    image.update()
    for area in getattr(bpy.context.screen, "areas", ()):
        area.tag_redraw()


def active_map_image(context):
    """The map the panel works on: the settings' image, else the canvas of Texture Paint."""
    s = context.scene.terrain_gan
    if s.paint_image is not None:
        return s.paint_image
    return getattr(context.scene.tool_settings.image_paint, "canvas", None)


def new_map_image(name: str, labels: np.ndarray):
    """A new image holding a class map in the palette's colours."""
    h, w = labels.shape
    img = bpy.data.images.new(name, width=w, height=h, alpha=False)
    set_map_labels(img, labels)
    return img


def new_map_plane(name: str, image, width_m: float, depth_m: float, *, unlit: bool = False):
    """A flat plane (mesh, material and object ``name``, not linked to a scene) of ``width_m`` x
    ``depth_m`` centred on its origin, showing a class-map image pixel by pixel: classes are categories,
    so no blends between them. ``unlit``: the colours exactly as painted (emission, for renders) instead
    of a lit surface."""
    hx, hy = width_m / 2.0, depth_m / 2.0
    me = bpy.data.meshes.new(name)
    me.from_pydata([(-hx, -hy, 0), (hx, -hy, 0), (hx, hy, 0), (-hx, hy, 0)], [], [(0, 1, 2, 3)])
    uv = me.uv_layers.new(name="UVMap")
    uv.uv.foreach_set("vector", np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32))
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nt = mat.node_tree
    if unlit:
        for nd in list(nt.nodes):
            if nd.type != "OUTPUT_MATERIAL":
                nt.nodes.remove(nd)
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation = image, "Closest"
    if unlit:
        out = next(nd for nd in nt.nodes if nd.type == "OUTPUT_MATERIAL")
        emit = nt.nodes.new("ShaderNodeEmission")
        nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
        nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    else:
        bsdf = next((nd for nd in nt.nodes if nd.type == "BSDF_PRINCIPLED"), None)
        if bsdf is not None:
            nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    nt.nodes.active = tex
    me.materials.append(mat)
    return bpy.data.objects.new(name, me)


# ---------------------------------------------------------------------------------- palette and brush


def ensure_palette():
    pal = bpy.data.palettes.get(PALETTE_NAME) or bpy.data.palettes.new(PALETTE_NAME)
    want = [tuple(float(v) / 255.0 for v in c.rgb) for c in CLASSES]
    have = [tuple(col.color) for col in pal.colors]
    if len(have) != len(want) or any(
        max(abs(a - b) for a, b in zip(x, y, strict=True)) > 1e-6 for x, y in zip(have, want, strict=True)
    ):
        while len(pal.colors):
            pal.colors.remove(pal.colors[0])
        for rgb in want:
            pal.colors.new().color = rgb
    return pal


def ensure_brush(context):
    """A hard-edged, full-strength brush made active for Texture Paint.

    Since Blender 4.3 brushes are assets and ``image_paint.brush`` is read-only: the brush is marked as a
    local asset and activated through ``brush.asset_activate``; before 4.3 it is assigned directly.
    """
    brush = bpy.data.brushes.get(BRUSH_NAME)
    if brush is None:
        brush = bpy.data.brushes.new(BRUSH_NAME, mode="TEXTURE_PAINT")
    brush.strength = 1.0
    brush.blend = "MIX"
    # No falloff and no anti-aliasing: class borders stay hard (the property was renamed in 5.0).
    for attr in ("curve_distance_falloff_preset", "curve_preset"):
        if hasattr(brush, attr):
            setattr(brush, attr, "CONSTANT")
            break
    if hasattr(brush, "use_paint_antialiasing"):
        brush.use_paint_antialiasing = False
    if hasattr(brush, "use_pressure_strength"):
        brush.use_pressure_strength = False
    ip = context.scene.tool_settings.image_paint
    if bpy.app.version >= (4, 3, 0):
        if brush.asset_data is None:
            brush.asset_mark()
        with context.temp_override(**_view3d_override(context)):
            bpy.ops.brush.asset_activate(
                asset_library_type="LOCAL", relative_asset_identifier="Brush/" + BRUSH_NAME
            )
    else:
        ip.brush = brush
    return brush


def _view3d_override(context) -> dict:
    win = context.window or (context.window_manager.windows[0] if context.window_manager.windows else None)
    if win is None:
        return {}
    for area in win.screen.areas:
        if area.type == "VIEW_3D":
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            return dict(window=win, screen=win.screen, area=area, region=region)
    return dict(window=win)


def unified_settings(context):
    """Where the shared paint colour lives: per paint mode since Blender 5.0, on the tool settings before."""
    ts = context.scene.tool_settings
    ups = getattr(ts.image_paint, "unified_paint_settings", None)
    return ups if ups is not None else ts.unified_paint_settings


def set_paint_colour(context, cid: int) -> None:
    rgb = tuple(float(v) / 255.0 for v in PALETTE[cid])
    ip = context.scene.tool_settings.image_paint
    unified_settings(context).color = rgb
    brush = ip.brush
    if brush is not None and hasattr(brush, "color"):
        brush.color = rgb  # when unified colour is off the brush's own colour is used


# ---------------------------------------------------------------------------------- operators


class TERRAIN_OT_new_paint_plane(bpy.types.Operator):
    """Add a plane with a class map to paint, a palette of the 7 classes and a hard brush; start painting"""

    bl_idname = "terrain.new_paint_plane"
    bl_label = "New Paint Plane"
    bl_options = {"REGISTER", "UNDO"}

    size: FloatProperty(
        name="Size", description="Side of the plane, metres", default=200.0, min=0.01, unit="LENGTH"
    )
    resolution: IntProperty(
        name="Map resolution", description="Pixels per side of the map", default=256, min=8, max=8192
    )
    fill_class: EnumProperty(
        name="Fill", description="Class the map starts as", items=CLASS_ITEMS, default="PLAINS"
    )

    def invoke(self, context, event):
        s = context.scene.terrain_gan
        self.size, self.resolution, self.fill_class = s.plane_size_m, s.map_resolution, s.fill_class
        return self.execute(context)

    def execute(self, context):
        s = context.scene.terrain_gan
        if context.object is not None and context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        n = self.resolution
        img = new_map_image(MAP_IMAGE_NAME, maps.filled(n, n, class_id(self.fill_class)))
        ob = new_map_plane(PLANE_NAME, img, self.size, self.size)
        ob.location = context.scene.cursor.location
        ob.hide_render = True  # a painting aid: the generated terrain is what renders
        context.collection.objects.link(ob)
        for o in context.view_layer.objects:
            o.select_set(False)
        ob.select_set(True)
        context.view_layer.objects.active = ob
        s.paint_image, s.paint_object = img, ob
        s.plane_size_m, s.map_resolution, s.fill_class = self.size, n, self.fill_class

        ts = context.scene.tool_settings
        ts.image_paint.palette = ensure_palette()
        ts.image_paint.mode = "IMAGE"  # paint on this one image, whatever the material's slots
        ts.image_paint.canvas = img
        bpy.ops.object.mode_set(mode="TEXTURE_PAINT")
        ensure_brush(context)
        set_paint_colour(context, class_id("MOUNTAINS"))
        for area in getattr(context.screen, "areas", ()):
            if area.type == "VIEW_3D":
                shading = area.spaces.active.shading
                if shading.type == "SOLID":
                    shading.color_type = "TEXTURE"
        self.report({"INFO"}, f"Paint plane {self.size:g} m with a {n}x{n} map; paint with the class colours")
        return {"FINISHED"}


class TERRAIN_OT_set_paint_class(bpy.types.Operator):
    """Paint with this terrain class"""

    bl_idname = "terrain.set_paint_class"
    bl_label = "Paint Class"
    bl_options = {"REGISTER", "INTERNAL"}

    terrain_class: EnumProperty(name="Class", items=CLASS_ITEMS, default="MOUNTAINS")

    @classmethod
    def description(cls, context, props):
        c = CLASSES[class_id(props.terrain_class)]
        return f"Paint {c.name}: {c.description}"

    def execute(self, context):
        set_paint_colour(context, class_id(self.terrain_class))
        return {"FINISHED"}


class _MapOperator:
    @classmethod
    def poll(cls, context):
        return active_map_image(context) is not None


def fill_active_map(context, terrain_class: str) -> set[str]:
    """Fill the panel's map with one class (an enum identifier of ``CLASS_ITEMS``)."""
    img = active_map_image(context)
    w, h = img.size
    set_map_labels(img, maps.filled(w, h, class_id(terrain_class)))
    return {"FINISHED"}


class TERRAIN_OT_fill_map(_MapOperator, bpy.types.Operator):
    """Fill the whole map with one terrain class"""

    bl_idname = "terrain.fill_map"
    bl_label = "Fill Map"
    bl_options = {"REGISTER", "UNDO"}

    terrain_class: EnumProperty(name="Class", items=CLASS_ITEMS, default="PLAINS")

    def execute(self, context):
        return fill_active_map(context, self.terrain_class)


class TERRAIN_OT_clear_map(_MapOperator, bpy.types.Operator):
    """Clear the map back to the fill class"""

    bl_idname = "terrain.clear_map"
    bl_label = "Clear Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        return fill_active_map(context, context.scene.terrain_gan.fill_class)


class TERRAIN_OT_random_map(_MapOperator, bpy.types.Operator):
    """Replace the map with a plausible random one made from the map seed (sea, lowland, hills, mountains)"""

    bl_idname = "terrain.random_map"
    bl_label = "Random Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        img = active_map_image(context)
        w, h = img.size
        lab = maps.random_map(context.scene.terrain_gan.random_seed, max(w, h))
        set_map_labels(img, resize_nearest(lab, h, w))
        return {"FINISHED"}


class TERRAIN_OT_load_map(bpy.types.Operator):
    """Load a class map image (any size; every pixel snaps to the nearest class colour) into the paint map"""

    bl_idname = "terrain.load_map"
    bl_label = "Load Map"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(
        default="*.png;*.jpg;*.jpeg;*.bmp;*.tif;*.tiff;*.exr;*.webp", options={"HIDDEN"}
    )

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            labels = read_map_file(self.filepath)
        except (LabelMapError, OSError, RuntimeError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s = context.scene.terrain_gan
        img = active_map_image(context)
        if img is None:  # no plane yet: make one, then fill it
            bpy.ops.terrain.new_paint_plane(
                size=s.plane_size_m, resolution=max(labels.shape), fill_class=s.fill_class
            )
            img = s.paint_image
        set_map_labels(img, labels)
        self.report({"INFO"}, f"Loaded {Path(self.filepath).name} ({labels.shape[1]}x{labels.shape[0]})")
        return {"FINISHED"}


def read_map_file(path: str) -> np.ndarray:
    """Class ids of an image file read by Blender (no Pillow inside Blender); refuses non-maps clearly.

    The strict checks of ``terrain_core.imageio.check_image_file`` run first: the header's size against the
    limits (before Blender decodes anything) and a PNG's data for completeness (Blender pads a truncated
    PNG's missing rows)."""
    p = Path(bpy.path.abspath(path))
    header = check_image_file(p, min_side=MIN_SIDE, max_side=MAX_SIDE)
    try:
        img = bpy.data.images.load(str(p), check_existing=False)
    except RuntimeError as e:
        raise LabelMapError(f"{p}: Blender cannot read this image ({str(e).strip()[:200]})") from None
    try:
        w, h = img.size
        if w == 0 or h == 0:
            raise LabelMapError(f"{p}: the image is empty or not an image")
        if header is not None and (w, h) != header:
            hw, hh = header
            raise LabelMapError(f"{p}: Blender read {w}x{h} pixels, the file's header says {hw}x{hh}")
        if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
            raise LabelMapError(f"{p}: a map needs {MIN_SIDE}..{MAX_SIDE} pixels per side, got {w}x{h}")
        arr = image_array(img)
        try:
            return maps.labels_from_rgb_array(arr)
        except LabelMapError as e:
            raise LabelMapError(f"{p}: {e}") from None
    finally:
        bpy.data.images.remove(img)


class TERRAIN_OT_save_map(_MapOperator, bpy.types.Operator):
    """Save the class map as a PNG (exact palette colours)"""

    bl_idname = "terrain.save_map"
    bl_label = "Save Map"

    filepath: StringProperty(subtype="FILE_PATH", default="//terrain_map.png")
    filter_glob: StringProperty(default="*.png", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        try:
            labels = map_labels(active_map_image(context))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(path, PALETTE[labels])
        except (LabelMapError, OSError) as e:
            self.report({"ERROR"}, f"Could not save the map: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Map saved to {path}")
        return {"FINISHED"}


CLASSES_PAINT = (
    TERRAIN_OT_new_paint_plane,
    TERRAIN_OT_set_paint_class,
    TERRAIN_OT_fill_map,
    TERRAIN_OT_clear_map,
    TERRAIN_OT_random_map,
    TERRAIN_OT_load_map,
    TERRAIN_OT_save_map,
)
