"""Model files for the benchmark: the shipped default when there is one, else exports of seeded,
untrained presets (speed does not depend on the weights' values), cached between runs.

The cache key covers the preset, the source of terrain_core.nn and model_export.py, and the torch version,
so a change of the network re-exports instead of timing a stale graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

from bench.common import ROOT

CACHE = Path(
    os.environ.get("TERRAIN_BENCH_CACHE", Path(tempfile.gettempdir()) / f"terrain-bench-{os.getuid()}")
)


def _source_digest() -> str:
    h = hashlib.sha256()
    files = sorted((ROOT / "terrain_core" / "nn").glob("*.py")) + [ROOT / "terrain_core" / "model_export.py"]
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    try:
        import torch

        h.update(torch.__version__.encode())
    except ImportError:
        pass
    return h.hexdigest()[:12]


def preset_files(preset: str, *, onnx: bool = True) -> tuple[Path, Path | None]:
    """(safetensors, onnx) of the preset with weights from torch.manual_seed(0), exported once and cached."""
    import torch

    from terrain_core.config import ShadowConfig
    from terrain_core.config import preset as get_preset
    from terrain_core.model_export import export_model
    from terrain_core.nn.inference import InferenceNet

    d = CACHE / f"{preset}-{_source_digest()}"
    st, ox = d / f"{preset}.safetensors", d / f"{preset}.onnx"
    if st.is_file() and (ox.is_file() or not onnx):
        return st, (ox if onnx else None)
    if st.is_file() and not onnx:
        return st, None
    d.mkdir(parents=True, exist_ok=True)
    gen = get_preset(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = InferenceNet(gen, ShadowConfig()).eval()
    # The exporter logs and warns a lot (torchvision missing, dynamo notes): not the benchmark's business.
    logging.getLogger("torch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_out, ox_out = export_model(net, d / preset, metadata={"name": f"bench-{preset}"}, onnx=onnx)
    return st_out, ox_out


def default_files() -> tuple[Path, Path, str]:
    """(safetensors, onnx, description) of the default model: shipped files, or the untrained stand-in.

    The untrained stand-in is the same network ``TerrainGenerator.load(None)`` builds (preset and init
    seed from terrain_core.runtime), exported to both formats so both runtimes run identical weights.
    """
    from terrain_core import runtime

    shipped_st = runtime.MODELS_DIR / "default.safetensors"
    shipped_ox = runtime.MODELS_DIR / "default.onnx"
    if shipped_st.is_file() and shipped_ox.is_file():
        return shipped_st, shipped_ox, "shipped default model"
    st, ox = preset_files(runtime.UNTRAINED_PRESET)
    return st, ox, f"untrained '{runtime.UNTRAINED_PRESET}' preset (no default model shipped yet)"


def cached_onnx(preset: str) -> bool:
    """True when an ONNX export of the preset for the current source is in the cache."""
    d = CACHE / f"{preset}-{_source_digest()}"
    return (d / f"{preset}.onnx").is_file() and (d / f"{preset}.safetensors").is_file()
