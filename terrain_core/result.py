"""What a generation returns: plain numpy arrays and metadata, no tensors, no Blender objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TerrainResult:
    labels: np.ndarray  # [H, W] uint8 class ids that were generated from
    texture: np.ndarray  # [H, W, 3] float32 flat (unshaded) RGB in 0..1
    shaded: np.ndarray  # [H, W, 3] float32 RGB in 0..1 with the learned north-west hill-shading (preview)
    height: np.ndarray  # [H, W] float32 normalised height in -1..1 (the training data's uint16/32767.5-1)
    height_range_m: tuple[float, float]  # metres at normalised -1 and +1
    seed: int
    model: str = ""  # name or path of the model that made it
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def texture_rgb(self) -> np.ndarray:
        """[H, W, 3] uint8 flat texture."""
        return to_uint8(self.texture)

    @property
    def shaded_rgb(self) -> np.ndarray:
        """[H, W, 3] uint8 shaded preview."""
        return to_uint8(self.shaded)

    @property
    def height_m(self) -> np.ndarray:
        """[H, W] float32 height in metres."""
        lo, hi = self.height_range_m
        return (lo + (self.height + 1.0) * 0.5 * (hi - lo)).astype(np.float32)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height.shape[0], self.height.shape[1]


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
