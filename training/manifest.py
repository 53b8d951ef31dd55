"""Reading a dataset folder's manifest and splits (no torch: evaluation and training both use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_manifest(root: str | Path) -> dict[str, Any]:
    """RUN's ``manifest.json`` as a dict ({} when there is none or it is unreadable)."""
    man = Path(root) / "manifest.json"
    try:
        data = json.loads(man.read_text()) if man.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def split_names(root: str | Path, split: str) -> list[str] | None:
    """Map names of ``split`` (the data set's own split helper, else manifest "splits"), or None = all."""
    if not split:
        return None
    try:
        from training.data import dataset as dsmod

        fn = getattr(dsmod, "split_names", None)
        if fn is not None:
            return fn(Path(root), split)
    except ImportError:
        pass
    splits = read_manifest(root).get("splits")
    if isinstance(splits, dict) and splits.get(split):
        return list(splits[split])
    return None
