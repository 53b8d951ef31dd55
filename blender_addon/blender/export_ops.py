"""Export a generated terrain: height 16-bit PNG + 32-bit float EXR, texture PNG, splat masks, OBJ/GLB.

PNGs are written by the add-on's numpy PNG writer (exact values, no colour management), the EXR by
``terrain_core.rasterfiles`` (one float channel, Y: Blender's own image saving writes three identical RGB
channels), meshes through Blender's own OBJ and glTF exporters.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty

from terrain_core.exits import one_line
from terrain_core.labels import LabelMapError, resize_nearest
from terrain_core.output_set import OutputSet, atomic_file
from terrain_core.outputs import height_to_uint16, splat_masks
from terrain_core.rasterfiles import array_rows, write_exr
from terrain_core.result import to_uint8

from ..core.maps import map_checksum
from ..core.png import write_png
from .build import META_KEY, image_array, material_image
from .paint import map_labels


def write_height_exr(path: Path, height_m: np.ndarray) -> Path:
    """32-bit float EXR of heights in metres with one channel (Y), written under a temporary name first."""
    with atomic_file(path) as tmp:
        write_exr(tmp, array_rows(np.asarray(height_m, np.float32)))
    return path


def write_maps(
    out_dir: Path,
    *,
    height_m: np.ndarray,
    height_range_m: tuple[float, float],
    texture: np.ndarray | None = None,
    shaded: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    height_png: bool = True,
    height_exr: bool = True,
    splats: bool = True,
    masks: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Image outputs of one terrain into ``out_dir``; returns {file name: path}.

    ``masks``: the erosion masks {flow.png, deposition.png, wear.png: [H, W] 0..1}, written as 16-bit PNGs
    beside the splat maps when ``splats`` is on.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if height_png:
        lo, hi = height_range_m
        norm = (np.asarray(height_m, np.float64) - lo) / max(hi - lo, 1e-12) * 2.0 - 1.0
        files["height.png"] = write_png(out_dir / "height.png", height_to_uint16(norm))
    if height_exr:
        files["height.exr"] = write_height_exr(out_dir / "height.exr", height_m)
    if texture is not None:
        files["texture.png"] = write_png(out_dir / "texture.png", to_uint8(np.asarray(texture)[..., :3]))
    if shaded is not None:
        files["terrain.png"] = write_png(out_dir / "terrain.png", to_uint8(np.asarray(shaded)[..., :3]))
    if splats and labels is not None:
        s0, s1 = splat_masks(labels, soften_px=1.0)
        files["splat_0.png"] = write_png(out_dir / "splat_0.png", s0)
        files["splat_1.png"] = write_png(out_dir / "splat_1.png", s1)
    if splats and masks:
        for name, m in masks.items():
            v = np.rint(np.clip(np.asarray(m, np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
            files[name] = write_png(out_dir / name, v)
    return files


def terrain_masks(ob) -> dict[str, np.ndarray] | None:
    """The erosion masks of a generated terrain object, read back from its mask image (None: no erosion)."""
    meta = ob.get(META_KEY) or {}
    img = bpy.data.images.get(meta.get("mask_image", ""))
    if img is None:
        return None
    a = image_array(img)
    return {"flow.png": a[..., 0].copy(), "deposition.png": a[..., 1].copy(), "wear.png": a[..., 2].copy()}


def export_mesh_files(context, ob, out_dir: Path, *, obj: bool = False, glb: bool = False) -> dict[str, Path]:
    """OBJ (+MTL) and/or GLB of one object through Blender's exporters (only that object is exported)."""
    files: dict[str, Path] = {}
    if not (obj or glb):
        return files
    out_dir.mkdir(parents=True, exist_ok=True)
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    try:
        for o in selected:
            o.select_set(False)
        ob.select_set(True)
        view_layer.objects.active = ob
        if obj:
            p = out_dir / "terrain.obj"
            bpy.ops.wm.obj_export(
                filepath=str(p),
                export_selected_objects=True,
                export_materials=True,
                path_mode="COPY",
                export_uv=True,
                export_normals=True,
                apply_modifiers=True,
            )
            files["terrain.obj"] = p
        if glb:
            p = out_dir / "terrain.glb"
            bpy.ops.export_scene.gltf(
                filepath=str(p), export_format="GLB", use_selection=True, export_apply=True
            )
            files["terrain.glb"] = p
    finally:
        ob.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise OSError(f"Blender's exporter did not write {', '.join(missing)}")
    return files


def terrain_arrays(ob):
    """(height_m, texture, labels) of a generated terrain object, read back from its images and map."""
    meta = ob.get(META_KEY)
    if meta is None:
        raise LabelMapError(f"{ob.name} is not a generated terrain (select one made by Generate)")
    himg = bpy.data.images.get(meta.get("height_image", ""))
    if himg is None:
        raise LabelMapError(f"{ob.name}: its height image is gone; generate it again")
    height_m = image_array(himg)[..., 0].copy()
    tex_img = bpy.data.images.get(meta.get("texture_image", "")) or material_image(ob.active_material)
    texture = image_array(tex_img)[..., :3].copy() if tex_img is not None else None
    labels = None
    map_img = bpy.data.images.get(meta.get("map_image", ""))
    if map_img is not None:
        lab = map_labels(map_img)
        if map_checksum(lab) == meta.get("map_checksum"):
            labels = resize_nearest(lab, *height_m.shape)
    return height_m, texture, labels


class TERRAIN_OT_export(bpy.types.Operator):
    """Export the selected terrain: heights (16-bit PNG, 32-bit EXR), texture, splat masks, OBJ/GLB"""

    bl_idname = "terrain.export"
    bl_label = "Export Terrain"

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        ob = context.active_object
        return ob is not None and ob.get(META_KEY) is not None

    def execute(self, context):
        s = context.scene.terrain_gan
        ob = context.active_object
        folder = self.directory or s.export_dir
        if folder.startswith("//") and not bpy.data.filepath:
            self.report(
                {"ERROR"},
                f"Export folder {folder!r} is relative to the .blend file: save it first or pick a folder",
            )
            return {"CANCELLED"}
        out = Path(bpy.path.abspath(folder))
        meta = ob[META_KEY]
        try:
            height_m, texture, labels = terrain_arrays(ob)
            if s.export_splats and labels is None:
                raise LabelMapError(
                    "the map was repainted since this terrain was generated, so splat masks would not match "
                    "it: regenerate, or untick Splat masks"
                )
            # One output set: every file appears at the end or none does; a failed export keeps the
            # folder's earlier files as they were.
            with OutputSet(out, what="export folder") as staged:
                files = _export_into(context, ob, meta, staged.dir, height_m, texture, labels, s)
                files = staged.commit()
        except (LabelMapError, OSError, RuntimeError, ValueError) as e:
            self.report({"ERROR"}, f"Export failed: {one_line(e)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(files)} files to {out}")
        return {"FINISHED"}


def _export_into(context, ob, meta, out: Path, height_m, texture, labels, s) -> dict[str, Path]:
    """Write the chosen files of one terrain into ``out`` (the output set's staging folder)."""
    files = write_maps(
        out,
        height_m=height_m,
        height_range_m=(float(meta["height_min_m"]), float(meta["height_max_m"])),
        texture=texture if s.export_texture else None,
        labels=labels,
        height_png=s.export_height,
        height_exr=s.export_height,
        splats=s.export_splats,
        masks=terrain_masks(ob),
    )
    files.update(export_mesh_files(context, ob, out, obj=s.export_obj, glb=s.export_glb))
    meta_path = out / "meta.json"
    meta_path.write_text(json.dumps({**meta.to_dict(), "files": sorted(files)}, indent=2))
    files["meta.json"] = meta_path
    return files


CLASSES_EXPORT = (TERRAIN_OT_export,)
