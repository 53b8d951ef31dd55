"""Every random input of the generator, drawn from a seed outside the network.

The latent z and one noise map per residual block are explicit network inputs. Drawing them here, in
numpy, is what makes the two runtimes agree and what makes tiling seamless: for a large map the noise is
drawn once for the whole canvas and each tile takes its crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terrain_core.config import GeneratorConfig


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
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in 0..2**63-1, got {seed}")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    z = rng.random((batch, config.z_dim), dtype=np.float32)
    noises = []
    for f in config.block_scales():
        noises.append(rng.standard_normal((batch, 1, height // f, width // f), dtype=np.float32))
    return GeneratorInputs(z, tuple(noises))
