"""Settings: one PropertyGroup on the scene, and the add-on preferences."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.classes import CLASS_ITEMS
from .addon import addon_package

# Paths that may be written "//relative/to/the/blend" must say so since Blender 4.5 (else a warning).
BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()


def _prop(kind, name: str, description: str, default, **options):
    """``kind(name=..., description=..., default=..., **options)``: one line per setting below."""
    return kind(name=name, description=description, default=default, **options)


# Enum items: (identifier, UI name, tooltip).
RUNTIMES = [
    ("AUTO", "Automatic", "ONNX Runtime (bundled with the add-on)"),
    ("ONNX", "ONNX Runtime", "The bundled ONNX Runtime, CPU"),
    ("TORCH", "PyTorch", "PyTorch when importable in Blender's Python (GPU capable); loads .safetensors"),
]
DEVICES = [
    ("cpu", "CPU", "Run on the CPU"),
    ("cuda", "CUDA GPU", "NVIDIA GPU (PyTorch, or onnxruntime-gpu)"),
    ("mps", "Apple GPU", "Apple Metal (PyTorch only)"),
    ("auto", "Best available", "PyTorch picks CUDA, then MPS, then CPU"),
]
TILINGS = [
    ("AUTO", "Automatic", "Tile maps larger than 1024 pixels"),
    ("OFF", "Off", "One pass (needs memory for the whole map)"),
    ("ON", "Tiles", "Tiles of the size below"),
]
EROSION_LEVELS = [
    ("OFF", "Off", "The generator's relief as it is"),
    ("LIGHT", "Light", "A few steps: softened class borders, first channels"),
    ("MEDIUM", "Medium", "Channels, talus slopes and sediment on the valley floors"),
    ("STRONG", "Strong", "Deeper channels and more sediment (slower)"),
]
MESH_MODES = [
    ("MESH", "Mesh", "A mesh with the heights in its vertices"),
    ("DISPLACE", "Displace", "A flat grid and a Displace modifier reading a float height image"),
]
PLACEMENTS = [
    ("OVER", "Over the plane", "On the paint plane's footprint (hide the plane to see it alone)"),
    ("BESIDE", "Beside the plane", "East of the paint plane, so both stay visible"),
]


class TERRAIN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = addon_package()

    model_path: _prop(
        StringProperty, "Default model", "Model file (.onnx or .safetensors) used when the panel's model is "
        "left empty; empty = the model shipped with the add-on", "", subtype="FILE_PATH",
    )  # fmt: skip
    runtime: _prop(EnumProperty, "Runtime", "Which runtime runs the built-in model", "AUTO", items=RUNTIMES)
    threads: _prop(
        IntProperty, "CPU threads", "Threads the runtime may use (0 = all cores)", 0, min=0, max=256
    )
    device: _prop(EnumProperty, "Device", "Where the network runs", "cpu", items=DEVICES)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "model_path")
        row = layout.row()
        row.prop(self, "runtime")
        row.prop(self, "device")
        layout.prop(self, "threads")
        import importlib.util

        # find_spec, not import: importing torch takes seconds and the preferences redraw often.
        if importlib.util.find_spec("torch") is not None:
            layout.label(text="PyTorch is importable: the PyTorch runtime is available", icon="CHECKMARK")
        else:
            layout.label(text="PyTorch is not installed in Blender's Python: ONNX Runtime only", icon="INFO")


# Called with the new state whenever Live preview is switched: register() puts live mode's ``set_running``
# here (start the watcher timer; stop it and drop a pending preview), so that this module imports nothing
# of the add-on's behaviour and stays a leaf.
live_mode_listeners: list = []


def _live_mode_toggled(self, context):
    for listener in live_mode_listeners:
        listener(self.live_mode)


class TERRAIN_PG_settings(bpy.types.PropertyGroup):
    # ---------------------------------------------------------------- paint
    plane_size_m: _prop(
        FloatProperty, "Size", "Side of the paint plane and of the terrain, metres", 200.0,
        min=0.01, soft_max=20000.0, unit="LENGTH",
    )  # fmt: skip
    map_resolution: _prop(
        IntProperty, "Map resolution", "Pixels per side of the painted class map", 256, min=8, max=8192
    )
    fill_class: _prop(
        EnumProperty, "Fill class", "Class a new map (and Clear) fills with", "PLAINS", items=CLASS_ITEMS
    )
    paint_image: PointerProperty(
        name="Map image", description="The class map that Generate reads", type=bpy.types.Image
    )
    paint_object: PointerProperty(
        name="Paint plane",
        description="The plane the map is painted on; the terrain takes its place",
        type=bpy.types.Object,
    )
    random_seed: _prop(IntProperty, "Map seed", "Seed of Random map", 0, min=0)
    # ---------------------------------------------------------------- generate
    model_path: _prop(
        StringProperty, "Model", "Model file (.onnx or .safetensors); empty = the default model", "",
        subtype="FILE_PATH", options=BLEND_RELATIVE,
    )  # fmt: skip
    seed: _prop(IntProperty, "Seed", "Same map + same seed = same terrain", 0, min=0)
    resolution: _prop(
        IntProperty, "Resolution", "Generation resolution: pixels along the map's longer side", 256,
        min=16, max=8192,
    )  # fmt: skip
    mesh_resolution: _prop(
        IntProperty, "Mesh resolution",
        "Vertices along the longer side (0 = one per generated pixel); lower = lighter mesh", 0,
        min=0, max=4096,
    )  # fmt: skip
    height_min_m: _prop(
        FloatProperty, "Lowest", "Height of the lowest possible ground, metres", 0.0, unit="LENGTH"
    )
    height_max_m: _prop(
        FloatProperty, "Highest", "Height of the highest possible ground, metres", 40.0, unit="LENGTH"
    )
    tiling: _prop(
        EnumProperty, "Tiling", "Generate large maps in overlapping tiles (memory bound by the tile)", "AUTO",
        items=TILINGS,
    )  # fmt: skip
    tile_size: _prop(IntProperty, "Tile", "Tile side in pixels", 512, min=64, max=4096)
    use_shaded: _prop(
        BoolProperty, "Shaded texture",
        "Use the texture with the learned hill-shading baked in (looks right from above only)", False,
    )  # fmt: skip
    erosion: _prop(
        EnumProperty, "Erosion",
        "Erode the generated relief: rivers, talus, sediment (live previews use Light at most)", "OFF",
        items=EROSION_LEVELS,
    )  # fmt: skip
    erosion_material: _prop(
        BoolProperty, "Mask material",
        "With erosion: darken wet channels (flow), show rock where worn or steep and lighter sediment where "
        "deposited, over the generated texture (off: the plain texture material)", True,
    )  # fmt: skip
    mesh_mode: _prop(EnumProperty, "Mesh", "How the heights become geometry", "MESH", items=MESH_MODES)
    placement: _prop(EnumProperty, "Place", "Where the terrain appears", "OVER", items=PLACEMENTS)
    replace_previous: _prop(
        BoolProperty, "Replace previous",
        "Replace the last generated terrain of this map instead of adding another object", True,
    )  # fmt: skip
    live_mode: _prop(
        BoolProperty, "Live preview",
        "Regenerate a low-resolution preview shortly after each stroke (never blocks painting)", False,
        update=_live_mode_toggled,
    )  # fmt: skip
    live_resolution: _prop(
        IntProperty, "Preview resolution", "Generation resolution of live previews", 128, min=32, max=1024
    )
    # ---------------------------------------------------------------- export
    export_dir: _prop(
        StringProperty, "Folder", "Where Export writes its files", "//terrain_export/",
        subtype="DIR_PATH", options=BLEND_RELATIVE,
    )  # fmt: skip
    export_height: _prop(
        BoolProperty, "Height", "height.png (16-bit) and height.exr (32-bit float, metres)", True
    )
    export_texture: _prop(BoolProperty, "Texture", "texture.png (the terrain's texture image)", True)
    export_splats: _prop(BoolProperty, "Splat masks", "splat_0.png / splat_1.png class weights", True)
    export_obj: _prop(BoolProperty, "OBJ", "terrain.obj through Blender's OBJ exporter", False)
    export_glb: _prop(BoolProperty, "GLB", "terrain.glb through Blender's glTF exporter", False)


def register_props():
    bpy.types.Scene.terrain_gan = PointerProperty(type=TERRAIN_PG_settings)


def unregister_props():
    if hasattr(bpy.types.Scene, "terrain_gan"):
        del bpy.types.Scene.terrain_gan
