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
from ..core.pipeline import USER_ERRORS, GenerationCancelled, run_generation
from .build import META_KEY
from .scene_request import finish, request_from_scene

# The one generation the UI is running (the panel shows its progress and a Cancel button).
state = {"job": None, "label": ""}


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
