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


class TERRAIN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = addon_package()

    model_path: StringProperty(
        name="Default model",
        description="Model file (.onnx or .safetensors) used when the panel's model is left empty; "
        "empty = the model shipped with the add-on",
        subtype="FILE_PATH",
        default="",
    )
    runtime: EnumProperty(
        name="Runtime",
        description="Which runtime runs the built-in model",
        items=[
            ("AUTO", "Automatic", "ONNX Runtime (bundled with the add-on)"),
            ("ONNX", "ONNX Runtime", "The bundled ONNX Runtime, CPU"),
            (
                "TORCH",
                "PyTorch",
                "PyTorch when importable in Blender's Python (GPU capable); loads .safetensors",
            ),
        ],
        default="AUTO",
    )
    threads: IntProperty(
        name="CPU threads",
        description="Threads the runtime may use (0 = all cores)",
        default=0,
        min=0,
        max=256,
    )
    device: EnumProperty(
        name="Device",
        description="Where the network runs",
        items=[
            ("cpu", "CPU", "Run on the CPU"),
            ("cuda", "CUDA GPU", "NVIDIA GPU (PyTorch, or onnxruntime-gpu)"),
            ("mps", "Apple GPU", "Apple Metal (PyTorch only)"),
            ("auto", "Best available", "PyTorch picks CUDA, then MPS, then CPU"),
        ],
        default="cpu",
    )

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


def _live_mode_toggled(self, context):
    """Live mode on: start the watcher timer; off: stop it and drop a pending preview."""
    from . import live

    if self.live_mode:
        live.start()
    else:
        live.stop()


class TERRAIN_PG_settings(bpy.types.PropertyGroup):
    # ---------------------------------------------------------------- paint
    plane_size_m: FloatProperty(
        name="Size",
        description="Side of the paint plane and of the terrain, metres",
        default=200.0,
        min=0.01,
        soft_max=20000.0,
        unit="LENGTH",
    )
    map_resolution: IntProperty(
        name="Map resolution",
        description="Pixels per side of the painted class map",
        default=256,
        min=8,
        max=8192,
    )
    fill_class: EnumProperty(
        name="Fill class",
        description="Class a new map (and Clear) fills with",
        items=CLASS_ITEMS,
        default="PLAINS",
    )
    paint_image: PointerProperty(
        name="Map image",
        description="The class map that Generate reads",
        type=bpy.types.Image,
    )
    paint_object: PointerProperty(
        name="Paint plane",
        description="The plane the map is painted on; the terrain takes its place",
        type=bpy.types.Object,
    )
    random_seed: IntProperty(name="Map seed", description="Seed of Random map", default=0, min=0)
    # ---------------------------------------------------------------- generate
    model_path: StringProperty(
        name="Model",
        description="Model file (.onnx or .safetensors); empty = the default model",
        subtype="FILE_PATH",
        default="",
        options=BLEND_RELATIVE,
    )
    seed: IntProperty(name="Seed", description="Same map + same seed = same terrain", default=0, min=0)
    resolution: IntProperty(
        name="Resolution",
        description="Generation resolution: pixels along the map's longer side",
        default=256,
        min=16,
        max=8192,
    )
    mesh_resolution: IntProperty(
        name="Mesh resolution",
        description="Vertices along the longer side (0 = one per generated pixel); lower = lighter mesh",
        default=0,
        min=0,
        max=4096,
    )
    height_min_m: FloatProperty(
        name="Lowest",
        description="Height of the lowest possible ground, metres",
        default=0.0,
        unit="LENGTH",
    )
    height_max_m: FloatProperty(
        name="Highest",
        description="Height of the highest possible ground, metres",
        default=40.0,
        unit="LENGTH",
    )
    tiling: EnumProperty(
        name="Tiling",
        description="Generate large maps in overlapping tiles (memory bound by the tile)",
        items=[
            ("AUTO", "Automatic", "Tile maps larger than 1024 pixels"),
            ("OFF", "Off", "One pass (needs memory for the whole map)"),
            ("ON", "Tiles", "Tiles of the size below"),
        ],
        default="AUTO",
    )
    tile_size: IntProperty(name="Tile", description="Tile side in pixels", default=512, min=64, max=4096)
    use_shaded: BoolProperty(
        name="Shaded texture",
        description="Use the texture with the learned hill-shading baked in (looks right from above only)",
        default=False,
    )
    erosion: EnumProperty(
        name="Erosion",
        description="Erode the generated relief: rivers, talus, sediment (live previews use Light at most)",
        items=[
            ("OFF", "Off", "The generator's relief as it is"),
            ("LIGHT", "Light", "A few steps: softened class borders, first channels"),
            ("MEDIUM", "Medium", "Channels, talus slopes and sediment on the valley floors"),
            ("STRONG", "Strong", "Deeper channels and more sediment (slower)"),
        ],
        default="OFF",
    )
    erosion_material: BoolProperty(
        name="Mask material",
        description="With erosion: darken wet channels (flow), show rock where worn or steep and lighter "
        "sediment where deposited, over the generated texture (off: the plain texture material)",
        default=True,
    )
    mesh_mode: EnumProperty(
        name="Mesh",
        description="How the heights become geometry",
        items=[
            ("MESH", "Mesh", "A mesh with the heights in its vertices"),
            ("DISPLACE", "Displace", "A flat grid and a Displace modifier reading a float height image"),
        ],
        default="MESH",
    )
    placement: EnumProperty(
        name="Place",
        description="Where the terrain appears",
        items=[
            ("OVER", "Over the plane", "On the paint plane's footprint (hide the plane to see it alone)"),
            ("BESIDE", "Beside the plane", "East of the paint plane, so both stay visible"),
        ],
        default="OVER",
    )
    replace_previous: BoolProperty(
        name="Replace previous",
        description="Replace the last generated terrain of this map instead of adding another object",
        default=True,
    )
    live_mode: BoolProperty(
        name="Live preview",
        description="Regenerate a low-resolution preview shortly after each stroke (never blocks painting)",
        default=False,
        update=_live_mode_toggled,
    )
    live_resolution: IntProperty(
        name="Preview resolution",
        description="Generation resolution of live previews",
        default=128,
        min=32,
        max=1024,
    )
    # ---------------------------------------------------------------- export
    export_dir: StringProperty(
        name="Folder",
        description="Where Export writes its files",
        subtype="DIR_PATH",
        default="//terrain_export/",
        options=BLEND_RELATIVE,
    )
    export_height: BoolProperty(
        name="Height", description="height.png (16-bit) and height.exr (32-bit float, metres)", default=True
    )
    export_texture: BoolProperty(
        name="Texture", description="texture.png and terrain.png (shaded)", default=True
    )
    export_splats: BoolProperty(
        name="Splat masks", description="splat_0.png / splat_1.png class weights", default=True
    )
    export_obj: BoolProperty(
        name="OBJ", description="terrain.obj through Blender's OBJ exporter", default=False
    )
    export_glb: BoolProperty(
        name="GLB", description="terrain.glb through Blender's glTF exporter", default=False
    )


def register_props():
    bpy.types.Scene.terrain_gan = PointerProperty(type=TERRAIN_PG_settings)


def unregister_props():
    if hasattr(bpy.types.Scene, "terrain_gan"):
        del bpy.types.Scene.terrain_gan
