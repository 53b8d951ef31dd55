"""Training checkpoints: tensors and plain types only, written atomically.

``torch.load(path, weights_only=True)`` reads them back, so loading a checkpoint never runs code. The file
is written to a temporary name in the same folder, flushed to disk, then renamed over the old one
(os.replace is atomic on one file system): a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from terrain_core.output_set import atomic_file

FORMAT = "terrain-gan-train/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def atomic_save(state: dict[str, Any], path: str | Path) -> Path:
    """Save ``state`` through a temporary file, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, fsync=True) as tmp:
        torch.save(state, tmp)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, not a torch file, or holding code objects
        raise CheckpointError(
            f"{path} is not a readable training checkpoint ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a terrain-gan training checkpoint (format {FORMAT})")
    return state


def latest_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "latest.pt"
