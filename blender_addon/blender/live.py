"""Live mode: a low-resolution preview regenerated shortly after each stroke, never blocking painting.

A ``bpy.app.timers`` function polls the map image a few times a second (one ``foreach_get`` + a hash, well
under a millisecond at 256 px). The :class:`Debouncer` starts a preview once the map has been still for a
moment; a newer map cancels the stale job. Previews replace one "Terrain preview" object and are not undo
steps (they are a view of the map, not an edit).
"""

from __future__ import annotations

import hashlib
import time
import traceback
from functools import partial

import bpy
import numpy as np

from ..core.debounce import Debouncer
from ..core.jobs import Job
from ..core.pipeline import USER_ERRORS, run_generation
from .paint import active_map_image
from .scene_request import finish, request_from_scene

POLL_S = 0.25
DEBOUNCE_S = 0.6
PREVIEW_MESH = 128  # vertices per side of a preview: light enough to rebuild while painting

_live = {"debouncer": Debouncer(DEBOUNCE_S), "job": None, "req": None, "running": False, "last_error": ""}


def start() -> None:
    if not _live["running"]:
        _live["running"] = True
        _live["debouncer"] = Debouncer(DEBOUNCE_S)
        bpy.app.timers.register(_tick, first_interval=POLL_S, persistent=False)


def set_running(on: bool) -> None:
    """Live mode switched on or off in the panel (``props`` calls this through its update hook)."""
    if on:
        start()
    else:
        stop()


def stop() -> None:
    _live["running"] = False
    job = _live["job"]
    if job is not None:
        job.cancel()
    _live["job"] = None
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


@bpy.app.handlers.persistent
def restart_after_load(_dummy=None) -> None:
    """Timers do not survive loading a file: resume live mode if the loaded scene has it on."""
    stop()
    s = getattr(bpy.context.scene, "terrain_gan", None)
    if s is not None and s.live_mode:
        start()


def status() -> str:
    job = _live["job"]
    if _live["last_error"]:
        return _live["last_error"]
    if job is not None and not job.done:
        return f"Preview {int(job.progress * 100)}%"
    return "Preview up to date" if _live["running"] else ""


def _tick():
    if not _live["running"]:
        return None
    try:
        return step(bpy.context)
    except Exception:  # a timer that raises is dropped by Blender: keep live mode alive, say why
        traceback.print_exc()
        return POLL_S


def step(context) -> float | None:
    """One poll of the timer: build a finished preview, start a new one once the map has settled.

    Returns the seconds until the next poll, or None when live mode is off (the timer then ends).
    Background mode runs no timers: tests call this with the context they set up."""
    scene = context.scene
    s = getattr(scene, "terrain_gan", None)
    if s is None or not s.live_mode:
        _live["running"] = False
        return None
    job = _live["job"]
    if job is not None and job.done:
        _live["job"] = None
        if job.error is None and not job.cancelled:
            try:
                finish(context, _live["req"], job.result, preview=True)
                _live["last_error"] = ""
            except Exception as e:
                _live["last_error"] = f"Preview failed: {e}"
        elif job.error is not None and not job.cancelled:
            _live["last_error"] = f"Preview failed: {job.error}"
            _live["debouncer"].forget()
    img = active_map_image(context)
    if img is None or img.size[0] == 0:
        return POLL_S
    # Change detection hashes the raw pixels (a few ms at 512 px); the palette snap runs only when a
    # preview actually starts.
    w, h = img.size
    buf = np.empty(w * h * img.channels, np.float32)
    img.pixels.foreach_get(buf)
    key = hashlib.sha1(buf.tobytes()).hexdigest()
    if _live["debouncer"].observe(key, time.monotonic()):
        if _live["job"] is not None:
            _live["job"].cancel()  # stale: the map changed since it started
        try:
            # Live previews stay fast: no erosion, or light when the panel asks for any.
            erosion = "OFF" if s.erosion == "OFF" else "LIGHT"
            req = request_from_scene(
                context, resolution=s.live_resolution, mesh_resolution=PREVIEW_MESH, erosion=erosion
            )
        except USER_ERRORS as e:  # shown in the panel once, not raised on every poll
            _live["last_error"] = f"Preview not started: {e}"
            return POLL_S
        _live["req"] = req
        _live["job"] = Job(partial(run_generation, req), name="live").start()
    return POLL_S


def current_job():
    return _live["job"]
