"""The network the runtimes execute and export: generator + shadow generator + Lab -> RGB."""

from __future__ import annotations

import torch
from torch import nn

from terrain_core.config import GeneratorConfig, ShadowConfig
from terrain_core.nn.color import lab_to_rgb
from terrain_core.nn.generator import Generator
from terrain_core.nn.shadow import ShadowGenerator


class InferenceNet(nn.Module):
    """forward(onehot [N, classes, H, W], z [N, z_dim], *noises [N, 1, H/f, W/f])
    -> (texture RGB 0..1 [N, 3, H, W], height -1..1 [N, 1, H, W], shaded RGB 0..1 [N, 3, H, W]).

    Noises are positional (one per residual block, gen.block_scales() order) so that the ONNX graph has
    one named input per map.
    """

    def __init__(self, gen: GeneratorConfig, shadow: ShadowConfig):
        super().__init__()
        self.generator = Generator(gen)
        self.shadow = ShadowGenerator(shadow)

    def forward(self, onehot: torch.Tensor, z: torch.Tensor, *noises: torch.Tensor):
        out = self.shadow(self.generator(onehot, z, noises))
        return lab_to_rgb(out["texture_lab"]), out["height"], lab_to_rgb(out["shaded_lab"])
