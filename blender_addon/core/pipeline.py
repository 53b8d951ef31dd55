"""A generate request as plain data, and the work it implies, runnable off Blender's main thread.

The operator fills a :class:`GenerateRequest` from its properties, a worker thread runs
:func:`run_generation` (load or reuse the model, resize the map, generate, scale heights, build the grid
arrays), and the main thread only copies the finished arrays into Blender data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core.erosion import LEVELS as EROSION_LEVELS
from terrain_core.erosion import ErosionCancelled, ErosionError, erode, mask_images
from terrain_core.labels import LabelMapError, check_labels, resize_nearest
from terrain_core.model_format import choose_model_path
from terrain_core.noise import check_seed
from terrain_core.result import TerrainResult
from terrain_core.runtime import (
    GenerationCancelled,
    ModelFileError,
    RuntimeUnavailableError,
    TerrainGenerator,
)

from .grid import GridArrays, heightfield_to_grid
from .maps import map_checksum

RUNTIMES = ("AUTO", "ONNX", "TORCH")
MAX_RESOLUTION = 8192

# Errors a user can fix; operators report their message as it is (no traceback).
USER_ERRORS = (LabelMapError, ModelFileError, RuntimeUnavailableError, ValueError, OSError)
__all__ = [
    "GenerationCancelled",
    "ModelFileError",
    "GenerateRequest",
    "GenerateOutcome",
    "RequestError",
    "run_generation",
]


class RequestError(ValueError):
    """A setting is out of range or inconsistent; the message names it and the allowed values."""


@dataclass(frozen=True)
class GenerateRequest:
    labels: np.ndarray  # [H, W] uint8 class ids, row 0 = north (the painted map at its own size)
    seed: int = 0
    model_path: str = ""  # "" = the built-in default model
    runtime: str = "AUTO"  # which default model file to prefer: AUTO/ONNX = .onnx, TORCH = .safetensors
    device: str = "cpu"  # "cpu", "cuda", "mps" (torch), "auto"
    threads: int = 0  # CPU threads for the runtime; 0 = its default (all cores)
    resolution: int = 256  # generation resolution: pixels along the map's longer side; 0 = the map's own
    mesh_resolution: int = 0  # vertices along the longer side; 0 = one per generated pixel
    size_m: float = 200.0  # terrain extent along the longer side, metres
    height_min_m: float = 0.0  # metres at the model's lowest height (normalised -1)
    height_max_m: float = 40.0  # metres at its highest (normalised +1)
    tile: int | None = None  # None = tile automatically for large maps, 0 = never, N = tiles of N px
    flat_grid: bool = False  # Displace-modifier mode: the mesh stays flat, a height image displaces it
    erosion: str = "off"  # terrain_core.erosion level: off, light, medium, strong

    def validated(self) -> GenerateRequest:
        """Return self, or raise ``RequestError`` / ``LabelMapError`` saying which setting is wrong."""
        try:
            check_labels(self.labels)
        except LabelMapError as e:
            raise LabelMapError(f"the paint map is not usable: {e}") from None
        try:
            check_seed(self.seed)
        except ValueError as e:
            raise RequestError(str(e)) from None
        if self.runtime not in RUNTIMES:
            raise RequestError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if not (self.resolution == 0 or 16 <= self.resolution <= MAX_RESOLUTION):
            raise RequestError(
                f"generation resolution must be 16..{MAX_RESOLUTION} pixels (or 0 = the map's own), "
                f"got {self.resolution}"
            )
        if not (self.mesh_resolution == 0 or 2 <= self.mesh_resolution <= 4096):
            raise RequestError(
                f"mesh resolution must be 2..4096 vertices (or 0 = per pixel), got {self.mesh_resolution}"
            )
        if not self.size_m > 0:
            raise RequestError(f"terrain size must be positive metres, got {self.size_m}")
        if not self.height_max_m > self.height_min_m:
            raise RequestError(
                f"height range must have max > min, got {self.height_min_m} .. {self.height_max_m} m"
            )
        if self.threads < 0:
            raise RequestError(f"threads must be 0 (automatic) or more, got {self.threads}")
        if self.erosion not in EROSION_LEVELS:
            raise RequestError(f"erosion must be one of {', '.join(EROSION_LEVELS)}, got {self.erosion!r}")
        if self.model_path:
            p = Path(self.model_path)
            if p.suffix.lower() not in (".onnx", ".safetensors"):
                raise ModelFileError(f"{p}: a model file must be .onnx or .safetensors")
            if not p.is_file():
                raise ModelFileError(f"{p}: model file not found")
        return self

    def generation_shape(self) -> tuple[int, int]:
        """(H, W) the generator runs at: the map's aspect, longer side = ``resolution``."""
        h, w = self.labels.shape
        if not self.resolution:
            return h, w
        long_side = max(h, w)
        return max(1, round(self.resolution * h / long_side)), max(1, round(self.resolution * w / long_side))


@dataclass
class GenerateOutcome:
    result: TerrainResult  # at the generation resolution
    height_m: np.ndarray  # [H, W] float32 metres with the request's height range
    grid: GridArrays
    checksum: str  # of the painted map the request carried (at its own size)
    model_name: str
    model_info: dict
    timings: dict[str, float] = field(default_factory=dict)
    masks: dict[str, np.ndarray] | None = None  # erosion masks (flow, deposition, wear) in 0..1, or None
    erosion: dict | None = None  # the erosion's settings and mass balance, or None when off


# ------------------------------------------------------------------------------ models, loaded once

_cache_lock = threading.Lock()
_cache: dict[tuple, TerrainGenerator] = {}


def resolve_model_path(model_path: str, runtime: str) -> str | None:
    """The file to load, absolute (the cache key): the user's, else the shipped default in the preferred
    runtime's format (``choose_model_path``; None = the untrained stand-in while no model is shipped)."""
    path = choose_model_path(Path(model_path).expanduser() if model_path else None, runtime)
    return None if path is None else str(path.resolve())


def load_generator(model_path: str = "", runtime: str = "AUTO", device: str = "cpu", threads: int = 0):
    """A cached ``TerrainGenerator``: loading takes seconds, generating again with another seed should not.

    The cache key includes the file's size and mtime, so a model re-exported under the same name reloads.
    """
    path = resolve_model_path(model_path, runtime)
    stamp = None
    if path is not None:
        try:
            st = Path(path).stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None  # load() raises the clear "not found" error below
    key = (path, stamp, device, int(threads))
    with _cache_lock:
        gen = _cache.get(key)
        if gen is None:
            gen = TerrainGenerator.load(path, device=device, threads=int(threads) or None)
            _cache.clear()  # one model at a time: they hold hundreds of MB of runtime state
            _cache[key] = gen
        return gen


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ------------------------------------------------------------------------------ the work itself


def run_generation(
    req: GenerateRequest,
    progress: Callable[[float], Any] | None = None,
    cancel: threading.Event | None = None,
) -> GenerateOutcome:
    """Everything between a painted map and mesh arrays; safe to run in a worker thread (no bpy)."""
    progress = progress or (lambda _f: None)
    cancel = cancel or threading.Event()
    t0 = time.perf_counter()
    req.validated()
    progress(0.02)
    gen = load_generator(req.model_path, req.runtime, req.device, req.threads)
    t_load = time.perf_counter()
    if cancel.is_set():
        raise GenerationCancelled("generation cancelled")
    gh, gw = req.generation_shape()
    labels = resize_nearest(req.labels, gh, gw)
    result = gen.generate(
        labels,
        int(req.seed),
        tile=req.tile,
        progress=lambda f: progress(0.1 + 0.8 * float(f)),
        cancel=cancel,
    )
    t_gen = time.perf_counter()
    lo, hi = float(req.height_min_m), float(req.height_max_m)
    height_m = (lo + (result.height + 1.0) * 0.5 * (hi - lo)).astype(np.float32)
    result.height_range_m = (lo, hi)  # the request's metres, not the model's default, go into exports
    masks = erosion_info = None
    if req.erosion != "off":
        height_m, masks, erosion_info = _erode(req, labels, height_m, progress, cancel)
        result.height = (2.0 * (height_m - lo) / (hi - lo) - 1.0).astype(np.float32)
    t_erode = time.perf_counter()
    grid = heightfield_to_grid(height_m, req.size_m, req.mesh_resolution or None, flat=req.flat_grid)
    if cancel.is_set():
        raise GenerationCancelled("generation cancelled")
    progress(0.95)
    t_end = time.perf_counter()
    info = gen.info
    # A stand-in exported from untrained weights says so in its provenance, not in the runtime's flag.
    info["untrained"] = bool(info.get("untrained") or (info.get("provenance") or {}).get("untrained"))
    return GenerateOutcome(
        result=result,
        height_m=height_m,
        grid=grid,
        checksum=map_checksum(req.labels),
        model_name=gen.name,
        model_info=info,
        timings={
            "load_model": t_load - t0,
            "generate": t_gen - t_load,
            "erosion": t_erode - t_gen,
            "grid": t_end - t_erode,
            "worker_total": t_end - t0,
        },
        masks=masks,
        erosion=erosion_info,
    )


def _erode(req: GenerateRequest, labels: np.ndarray, height_m: np.ndarray, progress, cancel):
    """(eroded height in metres, masks {flow, deposition, wear .png: 0..1}, the erosion's record)."""
    cell = float(req.size_m) / max(labels.shape)
    try:
        eroded = erode(
            height_m,
            labels,
            strength=req.erosion,
            cell_size_m=cell,
            seed=int(req.seed),
            progress=lambda f: progress(0.9 + 0.05 * float(f)),
            cancel=cancel.is_set,
        )
    except ErosionCancelled:
        raise GenerationCancelled("generation cancelled") from None
    except ErosionError as e:
        raise RequestError(f"erosion: {e}") from None
    masks, _ = mask_images(eroded)
    info = {"level": req.erosion, "cell_size_m": cell, "seconds": eroded.seconds, **eroded.balance}
    return eroded.height_m, masks, info
