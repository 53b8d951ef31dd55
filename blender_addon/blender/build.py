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


# Colours the mask material mixes over the generated texture (linear RGB).
ROCK_RGB = (0.16, 0.15, 0.14, 1.0)
SEDIMENT_RGB = (0.55, 0.49, 0.38, 1.0)
WET_RGB = (0.35, 0.37, 0.40, 1.0)  # multiplied in: darker, slightly cool


def mask_material(name: str, image, mask_image, created=None):
    """The terrain material with the erosion masks mixed over ``image``.

    ``mask_image`` holds flow (R, log drainage area), deposition (G) and wear (B) in 0..1. Rock colour where
    the ground was worn or is steep (from the surface normal), lighter sediment where material was laid
    down, and darker, glossier ground along the channels (the wet look of flow).
    """
    mat = terrain_material(name, image, created=created)
    nt = mat.node_tree
    bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
    tex = next(n for n in nt.nodes if n.type == "TEX_IMAGE")
    x0, y0 = tex.location.x, tex.location.y
    masks = nt.nodes.new("ShaderNodeTexImage")
    masks.image = mask_image
    masks.extension = "EXTEND"
    masks.location = (x0 - 300, y0 - 350)
    sep = nt.nodes.new("ShaderNodeSeparateColor")
    sep.location = (x0, y0 - 350)
    nt.links.new(masks.outputs["Color"], sep.inputs["Color"])

    def map_range(value_socket, lo, hi, to_lo=0.0, to_hi=1.0, at=(0, 0)):
        m = nt.nodes.new("ShaderNodeMapRange")
        m.location = at
        nt.links.new(value_socket, m.inputs["Value"])
        m.inputs["From Min"].default_value, m.inputs["From Max"].default_value = lo, hi
        m.inputs["To Min"].default_value, m.inputs["To Max"].default_value = to_lo, to_hi
        return m.outputs["Result"]

    def mix(factor_socket, a_socket, b_rgba, blend="MIX", at=(0, 0)):
        m = nt.nodes.new("ShaderNodeMix")
        m.data_type, m.blend_type, m.clamp_factor = "RGBA", blend, True
        m.location = at
        nt.links.new(factor_socket, m.inputs[0])
        nt.links.new(a_socket, m.inputs[6])
        m.inputs[7].default_value = b_rgba
        return m.outputs[2]

    geo = nt.nodes.new("ShaderNodeNewGeometry")
    geo.location = (x0, y0 - 650)
    up = nt.nodes.new("ShaderNodeSeparateXYZ")
    up.location = (x0 + 180, y0 - 650)
    nt.links.new(geo.outputs["Normal"], up.inputs["Vector"])
    steep = map_range(up.outputs["Z"], 0.85, 0.6, at=(x0 + 360, y0 - 650))  # about 30..55 degrees
    worn = map_range(sep.outputs["Blue"], 0.0, 0.35, at=(x0 + 180, y0 - 450))
    rock = nt.nodes.new("ShaderNodeMath")
    rock.operation, rock.location = "MAXIMUM", (x0 + 540, y0 - 500)
    nt.links.new(steep, rock.inputs[0])
    nt.links.new(worn, rock.inputs[1])
    rock_f = map_range(rock.outputs["Value"], 0.0, 1.0, 0.0, 0.75, at=(x0 + 700, y0 - 500))
    sediment = map_range(sep.outputs["Green"], 0.0, 0.3, 0.0, 0.7, at=(x0 + 180, y0 - 250))
    wet = map_range(sep.outputs["Red"], 0.55, 0.9, at=(x0 + 180, y0 - 100))
    c = mix(rock_f, tex.outputs["Color"], ROCK_RGB, at=(x0 + 900, y0))
    c = mix(sediment, c, SEDIMENT_RGB, at=(x0 + 1100, y0))
    c = mix(wet, c, WET_RGB, blend="MULTIPLY", at=(x0 + 1300, y0))
    nt.links.new(c, bsdf.inputs["Base Color"])
    nt.links.new(map_range(wet, 0.0, 1.0, 0.9, 0.35, at=(x0 + 1300, y0 - 300)), bsdf.inputs["Roughness"])
    bsdf.location = (x0 + 1600, bsdf.location.y)
    out = next((n for n in nt.nodes if n.type == "OUTPUT_MATERIAL"), None)
    if out is not None:
        out.location = (x0 + 1900, out.location.y)
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
    use_masks: bool = True  # with erosion masks: the mask material (False: the plain texture material)
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
        images = _terrain_images(outcome, opts, created)
        t_img = time.perf_counter()
        me, disp_img = _terrain_mesh(outcome, opts, created)
        t_mesh = time.perf_counter()
        mask_img = _mask_image(outcome, opts, created)
        if mask_img is not None and opts.use_masks:
            mat = mask_material(f"{opts.name} material", images["texture"], mask_img, created=created)
        else:
            mat = terrain_material(f"{opts.name} material", images["texture"], created=created)
        me.materials.append(mat)
        ob = created.add(bpy.data.objects.new(opts.name, me))
        if disp_img is not None:
            _add_displace_modifier(ob, disp_img, opts, created)
        if opts.matrix_world is not None:
            ob.matrix_world = opts.matrix_world
        meta = dict(opts.metadata)
        meta.update(
            texture_image=images["texture"].name, height_image=images["height"].name, mesh_mode=opts.mesh_mode
        )
        if mask_img is not None:
            meta["mask_image"] = mask_img.name
        ob[META_KEY] = meta
        (opts.collection or scene.collection).objects.link(ob)
        if opts.pack:
            for img in (images["texture"], images["height"], disp_img, mask_img):
                if img is not None:
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


def _terrain_images(outcome, opts: BuildOptions, created: Created) -> dict:
    """The texture (shaded or flat) and the heights in metres as a float image (the Displace mode reads
    it, Export reads it back later)."""
    res = outcome.result
    tex_arr = res.shaded if opts.use_shaded else res.texture
    tex_img = new_image(f"{opts.name} texture", tex_arr, created=created)
    height_img = new_image(
        f"{opts.name} height", outcome.height_m, float_buffer=True, non_color=True, created=created
    )
    height_img.use_fake_user = True  # referenced only by name from the object: keep it in saved files
    return {"texture": tex_img, "height": height_img}


def _terrain_mesh(outcome, opts: BuildOptions, created: Created):
    """(mesh, displacement image): a mesh with the heights in its vertices, or (Displace mode) a flat grid
    at the lowest height and the heights as a 0..1 float image for its modifier."""
    if opts.mesh_mode != "DISPLACE":
        return new_grid_mesh(opts.name, outcome.grid, created=created), None
    me = new_grid_mesh(opts.name, outcome.grid, z_offset=opts.height_min_m, created=created)
    disp_img = new_image(
        f"{opts.name} displace",
        (outcome.height_m - opts.height_min_m) / max(opts.height_max_m - opts.height_min_m, 1e-9),
        float_buffer=True,
        non_color=True,
        created=created,
    )
    return me, disp_img


def _mask_image(outcome, opts: BuildOptions, created: Created):
    """The erosion masks flow, deposition, wear as one RGB image (the material reads its channels), or
    None without erosion."""
    masks = getattr(outcome, "masks", None)
    if masks is None:
        return None
    rgb = np.stack([masks["flow.png"], masks["deposition.png"], masks["wear.png"]], axis=-1)
    mask_img = new_image(f"{opts.name} erosion masks", rgb, non_color=True, created=created)
    mask_img.use_fake_user = True  # Export reads it by name even with the plain material
    return mask_img


def _add_displace_modifier(ob, disp_img, opts: BuildOptions, created: Created) -> None:
    tex = created.add(bpy.data.textures.new(f"{opts.name} displace", type="IMAGE"))
    tex.image = disp_img
    tex.extension = "EXTEND"
    mod = ob.modifiers.new("Terrain height", "DISPLACE")
    mod.texture = tex
    mod.texture_coords = "UV"
    mod.direction = "Z"
    mod.mid_level = 0.0
    mod.strength = opts.height_max_m - opts.height_min_m


def remove_terrain(ob) -> None:
    """Remove a generated terrain object and the data only it used (mesh, material, images, texture)."""
    meta = dict(ob.get(META_KEY, {}))
    me = ob.data if ob.type == "MESH" else None
    mats = [m for m in (me.materials if me else []) if m is not None]
    images = {bpy.data.images.get(meta.get(k, "")) for k in ("texture_image", "height_image", "mask_image")}
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
