"""Every random input of the generator, drawn from a seed outside the network.

The latent z and one noise map per residual block are explicit network inputs. Drawing them here, in
numpy, is what makes the two runtimes agree and what makes tiling seamless: for a large map the noise is
drawn once for the whole canvas and each tile takes its crop.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from terrain_core.config import GeneratorConfig

# The one seed range of the project. Blender's IntProperty is a signed 32-bit int, so a seed the CLI, the
# batch script or the API accepted above this could not be shown or typed back into the add-on's panel.
SEED_MAX = 2**31 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in 0..SEED_MAX, or ``ValueError`` naming ``what`` (the one seed check)."""
    try:
        value = operator.index(seed)  # ints and numpy ints; a float or a bool-like string is a mistake
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {seed!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise ValueError(f"{what} must be in 0..{SEED_MAX} (2**31-1, what Blender can hold), got {value}")
    return value


@dataclass(frozen=True)
class GeneratorInputs:
    z: np.ndarray  # [N, z_dim] float32, U[0, 1)
    noises: tuple[np.ndarray, ...]  # per residual block: [N, 1, H/f, W/f] float32, N(0, 1)

    def crop(self, y0: int, x0: int, h: int, w: int, downsample: int, scales: list[int]) -> GeneratorInputs:
        """The inputs of the canvas window [y0:y0+h, x0:x0+w] (all multiples of ``downsample``)."""
        if any(v % downsample for v in (y0, x0, h, w)):
            raise ValueError(f"tile window {(y0, x0, h, w)} must be multiples of {downsample}")
        out = []
        for n, f in zip(self.noises, scales, strict=True):
            out.append(np.ascontiguousarray(n[:, :, y0 // f : (y0 + h) // f, x0 // f : (x0 + w) // f]))
        return GeneratorInputs(self.z, tuple(out))


def draw_inputs(
    config: GeneratorConfig, height: int, width: int, seed: int, batch: int = 1
) -> GeneratorInputs:
    """z and the noise maps for a canvas of ``height`` x ``width`` (multiples of config.downsample)."""
    ds = config.downsample
    if height % ds or width % ds:
        raise ValueError(f"canvas {height}x{width} must be a multiple of {ds}; pad the map first")
    rng = np.random.Generator(np.random.PCG64(check_seed(seed)))
    z = rng.random((batch, config.z_dim), dtype=np.float32)
    noises = []
    for f in config.block_scales():
        noises.append(rng.standard_normal((batch, 1, height // f, width // f), dtype=np.float32))
    return GeneratorInputs(z, tuple(noises))
