"""The model-file format: what a terrain_core model file holds and how it is checked.

Both the model exporter (:mod:`terrain_core.model_export`, weights -> files) and the inference runtime
(:mod:`terrain_core.runtime`, files -> terrain) need the same constants, metadata and checks. They live here,
below both, so that neither imports the other for them (that was an import circle).

Needs only the standard library and terrain_core's config and labels: no numpy, torch or onnxruntime.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any

from terrain_core.config import GeneratorConfig, ShadowConfig
from terrain_core.labels import CLASSES

FORMAT_NAME = "terrain-gan-model"
FORMAT_VERSION = 1
# Key of our JSON blob in the safetensors header's "__metadata__" and in the ONNX metadata_props.
METADATA_KEY = "terrain_gan"
INPUT_NAMES_FIXED = ("onehot", "z")  # then noise_0 .. noise_{n-1} in GeneratorConfig.block_scales() order
OUTPUT_NAMES = ("texture", "height", "shaded")
# Metres at normalised height -1 and +1 when the trainer does not say: a plausible land range, clearly
# marked as a default in the metadata (``height_range_m_source``).
DEFAULT_HEIGHT_RANGE_M = (0.0, 1000.0)


def input_names(gen: GeneratorConfig) -> list[str]:
    """Names of the exported network's inputs, in call order."""
    return [*INPUT_NAMES_FIXED, *(f"noise_{i}" for i in range(len(gen.block_scales())))]


def class_table() -> list[dict[str, Any]]:
    """The class table stored with a model: a model is only valid for the classes it was trained on."""
    return [{"id": c.id, "name": c.name, "rgb": list(c.rgb)} for c in CLASSES]


def build_metadata(
    gen: GeneratorConfig,
    shadow: ShadowConfig,
    *,
    name: str = "",
    height_range_m: tuple[float, float] | None = None,
    provenance: dict[str, Any] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """The metadata dict stored in both files (JSON-serialisable; checked here so that export fails early)."""
    from terrain_core import __version__

    if height_range_m is None:
        rng, source = DEFAULT_HEIGHT_RANGE_M, "default (not given at export)"
    else:
        rng, source = height_range_m, "export"
    lo, hi = (float(v) for v in rng)
    if not (lo == lo and hi == hi and hi > lo and abs(lo) < 1e7 and abs(hi) < 1e7):
        raise ValueError(f"height_range_m must be two finite numbers with hi > lo, got {rng!r}")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": str(name),
        "generator": gen.to_dict(),
        "shadow": dataclasses.asdict(shadow),
        "classes": class_table(),
        "height_range_m": [lo, hi],
        "height_range_m_source": source,
        "inputs": input_names(gen),
        "outputs": list(OUTPUT_NAMES),
        "provenance": dict(provenance or {}),
        "created": created or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "terrain_core_version": __version__,
    }
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model metadata must be plain JSON (str, numbers, lists, dicts): {e}") from None
    return meta


MODELS_DIR = Path(__file__).resolve().parent / "models"  # where the shipped default model lives
_MAX_HEADER = 64 << 20  # a safetensors JSON header larger than this is not one of ours


class ModelFileError(ValueError):
    """A model file is missing or is not a valid terrain_core export; the message says which and why."""


# The model file each runtime loads, in the order a default is preferred when no runtime is asked for.
RUNTIME_SUFFIXES = {"onnx": ".onnx", "torch": ".safetensors"}


def default_model_path(runtime: str | None = None) -> Path | None:
    """The shipped default model of a runtime ("onnx": ``models/default.onnx``, "torch":
    ``models/default.safetensors``; None: the .onnx, else the .safetensors), or None when none is shipped."""
    for suffix in [RUNTIME_SUFFIXES[runtime]] if runtime else RUNTIME_SUFFIXES.values():
        p = MODELS_DIR / f"default{suffix}"
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


def choose_model_path(
    model: str | os.PathLike | None = None, runtime: str | None = None, *, strict: bool = False
) -> Path | None:
    """The model file to load: ``model`` when given, else the shipped default of ``runtime``'s type, else
    any shipped default (:func:`default_model_path`); None = none is shipped (the untrained stand-in).

    ``runtime``: "onnx" or "torch" (any case), or None / "auto" for no preference. ``strict`` (the CLI's
    ``--runtime``): ``model`` must be that runtime's file type, and "onnx" without a shipped .onnx model
    is an error instead of a fallback. "torch" without a shipped .safetensors model still falls back to
    the shipped .onnx (which then runs on ONNX Runtime), as the CLI always did. Raises ``ModelFileError``.
    """
    kind = None if runtime is None or runtime.lower() == "auto" else runtime.lower()
    if kind is not None and kind not in RUNTIME_SUFFIXES:
        raise ValueError(f"runtime must be one of auto, {', '.join(RUNTIME_SUFFIXES)}, got {runtime!r}")
    suffix = RUNTIME_SUFFIXES.get(kind or "")
    if model is not None:
        if strict and suffix and Path(model).suffix != suffix:
            raise ModelFileError(f"the {kind} runtime needs a {suffix} model file, got {model}")
        return Path(model)
    shipped = default_model_path(kind) if kind else None
    if shipped is None and strict and kind == "onnx":
        raise ModelFileError(f"no built-in {suffix} model is shipped; give a model file")
    return shipped or default_model_path()


def validate_metadata(meta: Any, source: str) -> tuple[GeneratorConfig, ShadowConfig]:
    """Check a model's metadata dict; return its configs or raise ``ModelFileError`` saying what is wrong."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{source}: model metadata is not a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{source}: metadata format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{source}: metadata has no valid format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model format version {version} is newer than this terrain_core understands "
            f"({FORMAT_VERSION}); update terrain_core"
        )
    try:
        gen = GeneratorConfig.from_dict(dict(meta["generator"]))
        shadow = ShadowConfig(**dict(meta["shadow"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: generator/shadow config in the metadata is invalid: {e}") from None
    classes = meta.get("classes")
    ours = class_table()
    if not isinstance(classes, list) or [
        (c.get("id"), list(c.get("rgb", []))) for c in classes if isinstance(c, dict)
    ] != [(c["id"], c["rgb"]) for c in ours]:
        raise ModelFileError(
            f"{source}: the model was made for a different class table than terrain_core's 7 classes "
            "(ids and palette colours must match)"
        )
    rng = meta.get("height_range_m")
    if (
        not isinstance(rng, list)
        or len(rng) != 2
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng)
        or not rng[1] > rng[0]
    ):
        raise ModelFileError(f"{source}: height_range_m must be [lo, hi] metres with hi > lo, got {rng!r}")
    if gen.num_classes != len(ours) or gen.out_channels != 4:
        raise ModelFileError(f"{source}: generator must take {len(ours)} classes and output 4 channels")
    return gen, shadow


def parse_meta_json(text: Any, source: str) -> dict:
    if not isinstance(text, str):
        raise ModelFileError(
            f"{source}: no terrain_core metadata ('{METADATA_KEY}') in the file: it is not a model exported "
            "by terrain_core.model_export.export_model"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{source}: terrain_core metadata is not valid JSON ({e})") from None


def read_safetensors_header(path: Path) -> tuple[dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {tensor name: (dtype, shape)}) from a safetensors file, checked, without loading weights.

    The header is parsed here (8-byte little-endian length + JSON) rather than by the safetensors package,
    so a bad file gets our message and the check needs neither torch nor safetensors.
    """
    src = str(path)
    size = path.stat().st_size
    if size < 8:
        raise ModelFileError(f"{src}: file is {'empty' if size == 0 else 'truncated'} ({size} bytes)")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n < 2 or n > min(size - 8, _MAX_HEADER):
            raise ModelFileError(f"{src}: not a safetensors file (header length {n} does not fit the file)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{src}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{src}: not a safetensors file (its header is not a JSON object)")
    meta_strs = header.pop("__metadata__", None) or {}
    if not isinstance(meta_strs, dict):
        raise ModelFileError(f"{src}: safetensors __metadata__ is not a JSON object")
    meta = parse_meta_json(meta_strs.get(METADATA_KEY), src)
    data_len = size - 8 - n
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (a, b) = (
                entry["dtype"],
                tuple(int(s) for s in entry["shape"]),
                entry["data_offsets"],
            )
            ok = isinstance(dtype, str) and 0 <= int(a) <= int(b) <= data_len
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelFileError(f"{src}: tensor entry {name!r} in the header is malformed or out of range")
        tensors[name] = (dtype, shape)
    return meta, tensors
