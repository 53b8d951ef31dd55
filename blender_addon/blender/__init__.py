"""The Blender-facing half of the add-on: properties, operators, panels (imported only inside Blender)."""

from __future__ import annotations

import bpy

from . import live, props
from .export_ops import CLASSES_EXPORT
from .generate import CLASSES_GENERATE, state
from .paint import CLASSES_PAINT
from .panel import CLASSES_PANEL

classes = (
    props.TERRAIN_AddonPreferences,
    props.TERRAIN_PG_settings,
    *CLASSES_PAINT,
    *CLASSES_GENERATE,
    *CLASSES_EXPORT,
    *CLASSES_PANEL,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_props()
    props.live_mode_listeners.append(live.set_running)
    bpy.app.handlers.load_post.append(live.restart_after_load)


def unregister() -> None:
    if live.restart_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(live.restart_after_load)
    live.stop()
    if live.set_running in props.live_mode_listeners:
        props.live_mode_listeners.remove(live.set_running)
    job = state["job"]
    if job is not None:
        job.cancel()
    state["job"] = None
    props.unregister_props()
    for cls in reversed(classes):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
