"""A dataset folder's ``manifest.json``: its contents and its train/val split (no torch: the evaluation,
the model grid and training all use it; the builder writes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.data.files import DatasetError


def manifest_or_empty(root: str | Path) -> dict[str, Any]:
    """ROOT's ``manifest.json`` as a dict ({} when there is none or it is unreadable): for what a
    manifest may add (provenance, cell size), never for what the data needs."""
    man = Path(root) / "manifest.json"
    try:
        data = json.loads(man.read_text()) if man.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def split_names(root: str | Path, split: str) -> list[str] | None:
    """Names of ``split`` from ``manifest.json`` ("splits": {"train": [...], "val": [...]}); None = all
    (no split asked, no manifest, or a split it does not have). A broken manifest raises DatasetError."""
    man = Path(root) / "manifest.json"
    if not split or not man.is_file():
        return None
    try:
        splits = json.loads(man.read_text()).get("splits", {})
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise DatasetError(f"{man} is not a valid manifest ({e}); rebuild the dataset or delete it") from None
    names = splits.get(split) if isinstance(splits, dict) else None
    return list(names) if names else None
