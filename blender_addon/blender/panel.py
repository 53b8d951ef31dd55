"""The sidebar tab "Generate Terrain": Paint, Generate, Export."""

from __future__ import annotations

import bpy

from terrain_core.labels import CLASSES

from .build import META_KEY
from .generate import state
from .paint import active_map_image

CATEGORY = "Generate Terrain"


class _Panel:
    """A panel of the tab; ``bl_idname`` is the class name. Subclasses draw with the scene's settings."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    def draw(self, context):
        self.draw_settings(context, self.layout, context.scene.terrain_gan)


def _column(layout, settings, *names: str, **options):
    """Settings drawn one under the other in an aligned column."""
    col = layout.column(align=True, **options)
    for name in names:
        col.prop(settings, name)
    return col


class TERRAIN_PT_paint(_Panel, bpy.types.Panel):
    """Paint a terrain class map"""

    bl_label = "Paint"

    def draw_settings(self, context, layout, s):
        _column(layout, s, "plane_size_m", "map_resolution", "fill_class")
        layout.operator("terrain.new_paint_plane", icon="MESH_PLANE")
        img = active_map_image(context)
        if img is None:
            layout.label(text="Add a paint plane or load a map", icon="INFO")
            layout.operator("terrain.load_map", icon="FILEBROWSER")
            return
        layout.label(text=f"Map: {img.name} ({img.size[0]}x{img.size[1]})", icon="IMAGE_DATA")
        ip = context.scene.tool_settings.image_paint
        if ip.palette is not None:
            layout.template_palette(ip, "palette", color=True)
        grid = layout.grid_flow(row_major=True, columns=2, even_columns=True, align=True)
        for c in CLASSES:
            op = grid.operator("terrain.set_paint_class", text=c.name.capitalize())
            op.terrain_class = c.name.upper()
        row = layout.row(align=True)
        row.operator_menu_enum("terrain.fill_map", "terrain_class", text="Fill", icon="SNAP_FACE")
        row.operator("terrain.clear_map", text="Clear", icon="X")
        row = layout.row(align=True)
        row.operator("terrain.load_map", text="Load", icon="FILEBROWSER")
        row.operator("terrain.save_map", text="Save", icon="FILE_TICK")
        row = layout.row(align=True)
        row.prop(s, "random_seed")
        row.operator("terrain.random_map", icon="RNDCURVE")


class TERRAIN_PT_generate(_Panel, bpy.types.Panel):
    """Generate a terrain from the painted map"""

    bl_label = "Generate"

    def draw_settings(self, context, layout, s):
        layout.prop(s, "model_path")
        row = layout.row(align=True)
        row.prop(s, "seed")
        row.operator("terrain.randomize_seed", text="", icon="FILE_REFRESH")
        _column(layout, s, "resolution", "mesh_resolution")
        _column(layout, s, "height_min_m", "height_max_m")
        row = layout.row(align=True)
        row.prop(s, "tiling", text="")
        sub = row.row(align=True)
        sub.enabled = s.tiling == "ON"
        sub.prop(s, "tile_size")
        layout.prop(s, "mesh_mode", expand=True)
        layout.prop(s, "placement")
        row = layout.row()
        row.prop(s, "use_shaded")
        row.prop(s, "replace_previous")
        box = layout.box()
        box.label(text="Erosion", icon="MOD_FLUIDSIM")
        box.prop(s, "erosion", expand=True)
        sub = box.row()
        sub.enabled = s.erosion != "OFF"
        sub.prop(s, "erosion_material")
        job = state["job"]
        if job is not None and not job.done:
            row = layout.row(align=True)
            row.label(text=f"{state['label']}... {int(job.progress * 100)}%", icon="TIME")
            row.operator("terrain.cancel_generation", icon="CANCEL")
        else:
            layout.operator("terrain.generate", icon="RNDCURVE")
        row = layout.row(align=True)
        row.prop(s, "live_mode", icon="PLAY" if not s.live_mode else "PAUSE")
        row.prop(s, "live_resolution", text="")
        if s.live_mode:
            from . import live

            msg = live.status()
            if msg:
                layout.label(text=msg)
        ob = context.active_object
        meta = ob.get(META_KEY) if ob is not None else None
        if meta is not None:
            box = layout.box()
            box.label(
                text=f"{ob.name}: seed {meta.get('seed')}, model {meta.get('model')}", icon="OBJECT_DATA"
            )
            box.label(text=f"Map checksum {meta.get('map_checksum')}")
            row = box.row(align=True)
            row.operator("terrain.regenerate", icon="FILE_REFRESH")
            row.operator("terrain.variation", icon="MOD_NOISE")


class TERRAIN_PT_export(_Panel, bpy.types.Panel):
    """Export the selected terrain"""

    bl_label = "Export"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_settings(self, context, layout, s):
        layout.prop(s, "export_dir")
        _column(layout, s, "export_height", "export_texture", "export_splats", heading="Files")
        row = layout.row(align=True)
        row.prop(s, "export_obj", toggle=True)
        row.prop(s, "export_glb", toggle=True)
        layout.operator("terrain.export", icon="EXPORT")


CLASSES_PANEL = (TERRAIN_PT_paint, TERRAIN_PT_generate, TERRAIN_PT_export)
