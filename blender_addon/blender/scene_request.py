"""What Generate and live previews share: the scene's settings as a plain request, and a finished
generation placed back into the scene as a terrain object (main thread only, both)."""

from __future__ import annotations

import bpy

from ..core.object_meta import object_metadata
from ..core.pipeline import GenerateRequest
from .addon import preferences
from .build import META_KEY, BuildOptions, build_terrain
from .paint import active_map_image, map_labels

TERRAIN_NAME = "Terrain"
PREVIEW_NAME = "Terrain preview"


def runtime_settings() -> dict:
    """The add-on preferences' model and runtime settings (their defaults where the add-on is not enabled)."""
    prefs = preferences()
    if prefs is None:
        return dict(model_path="", runtime="AUTO", device="cpu", threads=0)
    return dict(
        model_path=prefs.model_path, runtime=prefs.runtime, device=prefs.device, threads=prefs.threads
    )


def request_from_scene(
    context, *, seed=None, image=None, resolution=None, mesh_resolution=None, erosion=None
) -> GenerateRequest:
    """The panel's settings as a plain request (reads the map pixels here, on the main thread)."""
    s = context.scene.terrain_gan
    rt = runtime_settings()
    model = (
        bpy.path.abspath(s.model_path)
        if s.model_path
        else (bpy.path.abspath(rt["model_path"]) if rt["model_path"] else "")
    )
    labels = map_labels(image if image is not None else active_map_image(context))
    tile = {"AUTO": None, "OFF": 0, "ON": int(s.tile_size)}[s.tiling]
    return GenerateRequest(
        labels=labels,
        seed=int(s.seed if seed is None else seed),
        model_path=model,
        runtime=rt["runtime"],
        device=rt["device"],
        threads=int(rt["threads"]),
        resolution=int(s.resolution if resolution is None else resolution),
        mesh_resolution=int(s.mesh_resolution if mesh_resolution is None else mesh_resolution),
        size_m=float(s.plane_size_m),
        height_min_m=float(s.height_min_m),
        height_max_m=float(s.height_max_m),
        tile=tile,
        flat_grid=s.mesh_mode == "DISPLACE",
        erosion=(s.erosion if erosion is None else erosion).lower(),
    ).validated()


def find_previous(scene, map_name: str, preview: bool):
    for ob in scene.objects:
        meta = ob.get(META_KEY)
        if (
            meta is not None
            and meta.get("map_image") == map_name
            and bool(meta.get("preview", False)) == preview
        ):
            return ob
    return None


def finish(context, req: GenerateRequest, outcome, *, target: str = "", preview: bool = False):
    """Build the terrain object for a finished generation (main thread). Returns (object, timings)."""
    s = context.scene.terrain_gan
    image = active_map_image(context)
    map_name = image.name if image is not None else ""
    replace = None
    if target:
        replace = context.scene.objects.get(target)
    elif preview:
        replace = find_previous(context.scene, map_name, preview=True)
    elif s.replace_previous:
        replace = find_previous(context.scene, map_name, preview=False)
    plane = s.paint_object
    opts = BuildOptions(
        name=PREVIEW_NAME if preview else (replace.name if replace is not None else TERRAIN_NAME),
        mesh_mode="DISPLACE" if req.flat_grid else "MESH",
        use_shaded=bool(s.use_shaded),
        use_masks=bool(s.erosion_material),
        height_min_m=req.height_min_m,
        height_max_m=req.height_max_m,
        matrix_world=placement_matrix(plane, req.size_m, beside=preview or s.placement == "BESIDE"),
        collection=context.collection if context.collection is not None else None,
        metadata=object_metadata(req, outcome, map_image=map_name, preview=preview),
        pack=not preview,
    )
    ob, timings = build_terrain(outcome, opts, context.scene, replace=replace)
    if not preview:
        s.seed = int(req.seed)  # the request was checked against SEED_MAX, which the IntProperty holds
    return ob, timings


def placement_matrix(plane, size_m: float, *, beside: bool):
    """Where the terrain goes: over the paint plane's footprint, or beside it (east, a small gap apart).

    Live previews always go beside, so the plane being painted stays visible.
    """
    if plane is None:
        return None
    from mathutils import Matrix

    m = plane.matrix_world.copy()
    if beside:
        m = m @ Matrix.Translation((size_m * 1.1, 0.0, 0.0))
    return m
