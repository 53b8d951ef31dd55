"""Painted class maps for the benchmark, at any size, from the hand-painted examples in examples/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.common import ROOT

EXAMPLES = ROOT / "examples"


def painted_rgb(size: int, name: str = "island") -> np.ndarray:
    """[size, size, 3] uint8 palette image: the example scaled by nearest neighbour (stays on-palette)."""
    from PIL import Image

    im = Image.open(EXAMPLES / f"{name}.png").convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.NEAREST)
    return np.asarray(im, dtype=np.uint8)


def class_map(size: int, name: str = "island") -> np.ndarray:
    """[size, size] uint8 class ids of the example map at this size."""
    from terrain_core.labels import labels_from_rgb

    return labels_from_rgb(painted_rgb(size, name))


def write_painted_png(path: Path, size: int, name: str = "island") -> Path:
    from PIL import Image

    Image.fromarray(painted_rgb(size, name)).save(path)
    return path
