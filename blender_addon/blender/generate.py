"""Generate: painted map -> worker thread -> terrain object on the main thread, as one undo step.

``terrain.generate`` is modal when invoked from the UI (the worker never touches Blender data; a timer polls
it, shows progress, Esc or the panel's Cancel stops it) and synchronous when executed (background mode,
scripts). Until the worker has finished nothing in the scene changes, so an error or a cancel leaves the
scene exactly as it was; the build itself rolls back whatever it made if it fails half-way.
"""

from __future__ import annotations

import random
import traceback
from functools import partial

import bpy
from bpy.props import IntProperty, StringProperty

from terrain_core.noise import SEED_MAX

from ..core.jobs import Job
from ..core.pipeline import (
    USER_ERRORS,
    GenerateRequest,
    GenerationCancelled,
    run_generation,
)
from .addon import preferences
from .build import META_KEY, BuildOptions, build_terrain
from .paint import active_map_image, map_labels

TERRAIN_NAME = "Terrain"
PREVIEW_NAME = "Terrain preview"

# The one generation the UI is running (the panel shows its progress and a Cancel button).
state = {"job": None, "label": ""}


def runtime_settings() -> dict:
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
    meta = dict(
        seed=int(req.seed),
        model=outcome.model_name,
        model_path=req.model_path,
        untrained=bool(outcome.model_info.get("untrained", False)),
        map_checksum=outcome.checksum,
        map_image=map_name,
        resolution=int(req.resolution),
        mesh_resolution=int(req.mesh_resolution),
        size_m=float(req.size_m),
        height_min_m=float(req.height_min_m),
        height_max_m=float(req.height_max_m),
        preview=bool(preview),
        erosion=req.erosion,
    )
    opts = BuildOptions(
        name=PREVIEW_NAME if preview else (replace.name if replace is not None else TERRAIN_NAME),
        mesh_mode="DISPLACE" if req.flat_grid else "MESH",
        use_shaded=bool(s.use_shaded),
        use_masks=bool(s.erosion_material),
        height_min_m=req.height_min_m,
        height_max_m=req.height_max_m,
        matrix_world=placement_matrix(plane, req.size_m, beside=preview or s.placement == "BESIDE"),
        collection=context.collection if context.collection is not None else None,
        metadata=meta,
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


def describe_error(e: BaseException) -> str:
    if isinstance(e, USER_ERRORS):
        return str(e)
    return f"{type(e).__name__}: {e} (see the console for details)"


class TERRAIN_OT_generate(bpy.types.Operator):
    """Generate a textured terrain mesh from the painted map (Esc cancels)"""

    bl_idname = "terrain.generate"
    bl_label = "Generate Terrain"
    bl_options = {"REGISTER", "UNDO"}

    seed_override: IntProperty(
        name="Seed",
        description="Seed to use instead of the panel's (-1 = panel)",
        default=-1,
        min=-1,
        options={"SKIP_SAVE"},
    )
    target: StringProperty(
        name="Replace",
        description="Name of a terrain object to replace",
        default="",
        options={"SKIP_SAVE", "HIDDEN"},
    )

    @classmethod
    def poll(cls, context):
        return state["job"] is None or state["job"].done

    def _request(self, context):
        seed = None if self.seed_override < 0 else self.seed_override
        return request_from_scene(context, seed=seed)

    def execute(self, context):
        try:
            req = self._request(context)
            outcome = run_generation(req)
            ob, timings = finish(context, req, outcome, target=self.target)
        except GenerationCancelled:
            self.report({"WARNING"}, "Generation cancelled; the scene is unchanged")
            return {"CANCELLED"}
        except Exception as e:
            if not isinstance(e, USER_ERRORS):
                traceback.print_exc()
            self.report({"ERROR"}, "Generate failed, the scene is unchanged: " + describe_error(e))
            return {"CANCELLED"}
        self._report_done(ob, outcome, timings)
        return {"FINISHED"}

    def _report_done(self, ob, outcome, timings):
        t = {**outcome.timings, **timings}
        self.report(
            {"INFO"},
            f"{ob.name}: seed {outcome.result.seed}, {outcome.result.size[1]}x{outcome.result.size[0]} px, "
            f"{outcome.grid.num_vertices} vertices in {t['worker_total'] + t['build_total']:.1f} s",
        )
        if outcome.model_info.get("untrained"):
            self.report(
                {"WARNING"},
                "No trained model is installed: the built-in stand-in is untrained, "
                "so the terrain is noise-like",
            )

    # ------------------------------------------------------------------------------ modal (UI)
    def invoke(self, context, event):
        try:
            self._req = self._request(context)
        except Exception as e:
            self.report({"ERROR"}, "Generate failed, the scene is unchanged: " + describe_error(e))
            return {"CANCELLED"}
        self._start(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start(self, context):
        """Start the worker and the polling timer (the part of invoke that tests can drive)."""
        self._job = Job(partial(_job_fn, self._req), name="generate").start()
        state["job"], state["label"] = self._job, "Generating"
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
            return {"RUNNING_MODAL"}  # consumed: Esc must not also reach other handlers
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        context.window_manager.progress_update(int(job.progress * 100))
        _redraw_panels(context)
        if not job.done:
            return {"PASS_THROUGH"}
        self._cleanup(context)
        if job.error is not None:
            if isinstance(job.error, GenerationCancelled) or job.cancelled:
                self.report({"WARNING"}, "Generation cancelled; the scene is unchanged")
            else:
                if not isinstance(job.error, USER_ERRORS):
                    print(job.traceback)
                self.report(
                    {"ERROR"}, "Generate failed, the scene is unchanged: " + describe_error(job.error)
                )
            return {"CANCELLED"}
        if job.cancelled:
            self.report({"WARNING"}, "Generation cancelled; the scene is unchanged")
            return {"CANCELLED"}
        try:
            ob, timings = finish(context, self._req, job.result, target=self.target)
        except Exception as e:
            traceback.print_exc()
            self.report({"ERROR"}, "Generate failed, the scene is unchanged: " + describe_error(e))
            return {"CANCELLED"}
        self._report_done(ob, job.result, timings)
        return {"FINISHED"}

    def cancel(self, context):
        # Blender calls this when the modal operator is aborted (file load, window close).
        self._job.cancel()
        self._cleanup(context)

    def _cleanup(self, context):
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        state["job"] = None
        _redraw_panels(context)


def _job_fn(req, progress, cancel):
    return run_generation(req, progress, cancel)


def _redraw_panels(context):
    for area in getattr(context.screen, "areas", ()):
        if area.type == "VIEW_3D":
            area.tag_redraw()


class TERRAIN_OT_cancel_generation(bpy.types.Operator):
    """Stop the running generation; the scene stays as it was"""

    bl_idname = "terrain.cancel_generation"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return state["job"] is not None and not state["job"].done

    def execute(self, context):
        state["job"].cancel()
        return {"FINISHED"}


class TERRAIN_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "terrain.randomize_seed"
    bl_label = "Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.terrain_gan.seed = random.randrange(0, SEED_MAX)
        return {"FINISHED"}


def selected_terrain(context):
    ob = context.active_object
    if ob is not None and ob.get(META_KEY) is not None and not ob[META_KEY].get("preview", False):
        return ob
    return None


class _FromTerrain:
    @classmethod
    def poll(cls, context):
        return selected_terrain(context) is not None and TERRAIN_OT_generate.poll(context)

    def _run(self, context, seed: int):
        ob = selected_terrain(context)
        meta = ob[META_KEY]
        img = bpy.data.images.get(meta.get("map_image", ""))
        if img is not None:
            context.scene.terrain_gan.paint_image = img
        op = "INVOKE_DEFAULT" if not bpy.app.background else "EXEC_DEFAULT"
        return bpy.ops.terrain.generate(op, seed_override=seed, target=ob.name)


class TERRAIN_OT_regenerate(_FromTerrain, bpy.types.Operator):
    """Generate the selected terrain again with its own seed from the current map (after repainting)"""

    bl_idname = "terrain.regenerate"
    bl_label = "Regenerate"

    def execute(self, context):
        return self._run(context, int(selected_terrain(context)[META_KEY]["seed"]))


class TERRAIN_OT_variation(_FromTerrain, bpy.types.Operator):
    """Replace the selected terrain by a variation: same map, a new random seed"""

    bl_idname = "terrain.variation"
    bl_label = "Variation"

    def execute(self, context):
        old = int(selected_terrain(context)[META_KEY]["seed"])
        seed = random.randrange(0, SEED_MAX)
        while seed == old:
            seed = random.randrange(0, SEED_MAX)
        return self._run(context, seed)


CLASSES_GENERATE = (
    TERRAIN_OT_generate,
    TERRAIN_OT_cancel_generation,
    TERRAIN_OT_randomize_seed,
    TERRAIN_OT_regenerate,
    TERRAIN_OT_variation,
)
