"""Blender data from finished numpy arrays: images, the terrain mesh, its material, the object.

Main thread only. Everything created for one terrain is tracked by a :class:`Created` record, so a failure
half-way removes exactly what was made and leaves the scene as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..core.grid import GridArrays

META_KEY = "terrain_gan"  # custom property on generated objects: seed, model, map checksum, settings


@dataclass
class Created:
    """IDs made during one build, removed again by ``rollback`` if the build fails."""

    ids: list = field(default_factory=list)

    def add(self, idblock):
        self.ids.append(idblock)
        return idblock

    def rollback(self) -> None:
        for idb in reversed(self.ids):
            try:
                collection = {
                    bpy.types.Object: bpy.data.objects,
                    bpy.types.Mesh: bpy.data.meshes,
                    bpy.types.Material: bpy.data.materials,
                    bpy.types.Image: bpy.data.images,
                    bpy.types.ImageTexture: bpy.data.textures,
                }.get(type(idb))
                if collection is not None:
                    collection.remove(idb)
            except ReferenceError:
                pass  # already gone with its owner
        self.ids.clear()


# ------------------------------------------------------------------------------------------ images


def rgba_pixels(img: np.ndarray) -> np.ndarray:
    """Flat RGBA float32 (row 0 = bottom, as Blender stores it) from [H, W], [H, W, 3] or [H, W, 4]."""
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    out = np.ones((h, w, 4), np.float32)
    if a.ndim == 2:
        out[..., :3] = a[..., None]
    else:
        out[..., : a.shape[2]] = a
    return np.ascontiguousarray(out[::-1]).ravel()


def new_image(
    name: str, img: np.ndarray, *, float_buffer: bool = False, non_color: bool = False, created=None
):
    """A generated image holding ``img`` (row 0 = top/north), written with one ``foreach_set``."""
    h, w = np.asarray(img).shape[:2]
    image = bpy.data.images.new(name, width=w, height=h, alpha=False, float_buffer=float_buffer)
    if created is not None:
        created.add(image)
    if non_color:
        image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(rgba_pixels(img))
    image.update()
    return image


def image_array(image) -> np.ndarray:
    """[H, W, 4] float32 (row 0 = top) from a Blender image, with one ``foreach_get``."""
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)[::-1]


def pack_image(image) -> None:
    """Pack a generated image into the .blend (else saving the file loses its pixels)."""
    try:
        image.pack()
    except RuntimeError:
        pass  # packing needs a writable temp dir; an unpacked image still works in this session


# ------------------------------------------------------------------------------------------ mesh


def new_grid_mesh(name: str, grid: GridArrays, z_offset: float = 0.0, created=None):
    """A mesh from grid arrays through the bulk attribute API (no per-vertex Python)."""
    me = bpy.data.meshes.new(name)
    if created is not None:
        created.add(me)
    fill_grid_mesh(me, grid, z_offset)
    return me


def fill_grid_mesh(me, grid: GridArrays, z_offset: float = 0.0) -> None:
    me.clear_geometry()
    me.vertices.add(grid.num_vertices)
    me.edges.add(grid.num_edges)
    me.loops.add(grid.corner_vert.size)
    me.polygons.add(grid.num_faces)
    pos = grid.positions
    if z_offset:
        pos = pos.copy()
        pos[2::3] += np.float32(z_offset)
    me.attributes["position"].data.foreach_set("vector", pos)
    me.attributes[".edge_verts"].data.foreach_set("value", grid.edge_verts)
    me.attributes[".corner_vert"].data.foreach_set("value", grid.corner_vert)
    me.attributes[".corner_edge"].data.foreach_set("value", grid.corner_edge)
    me.polygons.foreach_set("loop_start", grid.loop_start)
    uv_layer = me.uv_layers.new(name="UVMap")
    uv_layer.uv.foreach_set("vector", grid.uv)
    me.update()


def terrain_material(name: str, image, created=None):
    """Principled BSDF whose base colour is ``image`` on the UV map; rough, non-metallic ground."""
    mat = bpy.data.materials.new(name)
    if created is not None:
        created.add(mat)
    if mat.node_tree is None:  # Blender < 5.0: node trees are opt-in
        mat.use_nodes = True
    nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nt.nodes if n.type == "OUTPUT_MATERIAL"), None) or nt.nodes.new(
            "ShaderNodeOutputMaterial"
        )
        nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = 0.9
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.extension = "EXTEND"
    tex.location = (bsdf.location.x - 400, bsdf.location.y)
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    nt.nodes.active = tex
    return mat


def material_image(mat):
    """The image of a terrain material's texture node (None if there is none)."""
    if mat is None or mat.node_tree is None:
        return None
    for n in mat.node_tree.nodes:
        if n.type == "TEX_IMAGE" and n.image is not None:
            return n.image
    return None


# ------------------------------------------------------------------------------------------ terrain


@dataclass
class BuildOptions:
    name: str = "Terrain"
    mesh_mode: str = "MESH"  # MESH or DISPLACE
    use_shaded: bool = False
    height_min_m: float = 0.0
    height_max_m: float = 40.0
    matrix_world: object = None  # mathutils.Matrix of the paint plane (None = identity)
    collection: object = None  # where to link the object (None = the scene's collection)
    metadata: dict = field(default_factory=dict)
    pack: bool = True


def build_terrain(outcome, opts: BuildOptions, scene, replace=None):
    """The terrain object for a finished generation; replaces ``replace`` (an object) only on success.

    Returns (object, timings). On any error everything made here is removed and the error re-raised.
    """
    t0 = time.perf_counter()
    created = Created()
    try:
        res = outcome.result
        tex_arr = res.shaded if opts.use_shaded else res.texture
        tex_img = new_image(f"{opts.name} texture", tex_arr, created=created)
        # Heights in metres as a float image: the Displace mode reads it, Export reads it back later.
        height_img = new_image(
            f"{opts.name} height", outcome.height_m, float_buffer=True, non_color=True, created=created
        )
        height_img.use_fake_user = True  # referenced only by name from the object: keep it in saved files
        t_img = time.perf_counter()
        if opts.mesh_mode == "DISPLACE":
            me = new_grid_mesh(opts.name, outcome.grid, z_offset=opts.height_min_m, created=created)
            disp_img = new_image(
                f"{opts.name} displace",
                (outcome.height_m - opts.height_min_m) / max(opts.height_max_m - opts.height_min_m, 1e-9),
                float_buffer=True,
                non_color=True,
                created=created,
            )
        else:
            me = new_grid_mesh(opts.name, outcome.grid, created=created)
        t_mesh = time.perf_counter()
        mat = terrain_material(f"{opts.name} material", tex_img, created=created)
        me.materials.append(mat)
        ob = created.add(bpy.data.objects.new(opts.name, me))
        if opts.mesh_mode == "DISPLACE":
            tex = created.add(bpy.data.textures.new(f"{opts.name} displace", type="IMAGE"))
            tex.image = disp_img
            tex.extension = "EXTEND"
            mod = ob.modifiers.new("Terrain height", "DISPLACE")
            mod.texture = tex
            mod.texture_coords = "UV"
            mod.direction = "Z"
            mod.mid_level = 0.0
            mod.strength = opts.height_max_m - opts.height_min_m
        if opts.matrix_world is not None:
            ob.matrix_world = opts.matrix_world
        meta = dict(opts.metadata)
        meta.update(texture_image=tex_img.name, height_image=height_img.name, mesh_mode=opts.mesh_mode)
        ob[META_KEY] = meta
        (opts.collection or scene.collection).objects.link(ob)
        if opts.pack:
            for img in (tex_img, height_img) + ((disp_img,) if opts.mesh_mode == "DISPLACE" else ()):
                pack_image(img)
        t_done = time.perf_counter()
    except BaseException:
        created.rollback()
        raise
    if replace is not None:
        remove_terrain(replace)
    ob.name = opts.name  # the old object's name is free now
    return ob, {
        "images": t_img - t0,
        "mesh": t_mesh - t_img,
        "object": t_done - t_mesh,
        "build_total": t_done - t0,
    }


def remove_terrain(ob) -> None:
    """Remove a generated terrain object and the data only it used (mesh, material, images, texture)."""
    meta = dict(ob.get(META_KEY, {}))
    me = ob.data if ob.type == "MESH" else None
    mats = [m for m in (me.materials if me else []) if m is not None]
    images = {bpy.data.images.get(meta.get(k, "")) for k in ("texture_image", "height_image")}
    textures = [m.texture for m in ob.modifiers if m.type == "DISPLACE" and m.texture is not None]
    images |= {t.image for t in textures if getattr(t, "image", None) is not None}
    images |= {material_image(m) for m in mats}
    for img in images:
        if img is not None:
            img.use_fake_user = False
    bpy.data.objects.remove(ob)
    if me is not None and me.users == 0:
        bpy.data.meshes.remove(me)
    for m in mats:
        if m.users == 0:
            bpy.data.materials.remove(m)
    for t in textures:
        if t.users == 0:
            bpy.data.textures.remove(t)
    for img in images:
        if img is not None and img.users == 0:
            bpy.data.images.remove(img)
