"""The shadow generator: learns the hill-shading baked into the data's terrain images.

Kept apart from the generator so that the texture stays unshaded (the add-on lights the mesh itself) while
the discriminator still sees shaded terrain like the real images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from terrain_core.config import ShadowConfig
from terrain_core.nn.layers import conv2d, finite_differences, in_float32, symmetric_pad


class ShadowGenerator(nn.Module):
    """forward(raw [N, 4, H, W]) -> dict(texture_lab, height, shaded_lab), all tanh'd (about -1..1).

    h = tanh(raw height); its row/column differences -> 3x3 conv -> leaky ReLU -> 1x1 conv = a shading
    map added to the L channel only of the raw texture before the tanh.
    """

    def __init__(self, cfg: ShadowConfig):
        super().__init__()
        self.cfg = cfg
        self.conv1 = conv2d(2, cfg.hidden, 3)
        self.conv2 = conv2d(cfg.hidden, 1, 1)

    def shading(self, height: torch.Tensor) -> torch.Tensor:
        # height [N, 1, H, W] (tanh'd) -> shading of L [N, 1, H, W]
        g = finite_differences(height)  # [N, 2, H, W]
        g = F.leaky_relu(self.conv1(symmetric_pad(g, 1)), self.cfg.leaky_slope)  # [N, hidden, H, W]
        return self.conv2(g)

    def forward(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        if raw.dim() != 4 or raw.shape[1] != 4:
            raise ValueError(
                f"shadow generator input must be [N, 4, H, W] (Lab + height), got {tuple(raw.shape)}"
            )
        # In fp32 under autocast: its outputs are the height and shading that D compares with real ones.
        return in_float32(self._forward, raw)

    def _forward(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        tex, h_raw = raw[:, :3], raw[:, 3:4]  # [N, 3, H, W], [N, 1, H, W]
        height = torch.tanh(h_raw)
        shade = self.shading(height)  # [N, 1, H, W]
        shaded = torch.tanh(torch.cat([tex[:, :1] + shade, tex[:, 1:]], dim=1))
        return {"texture_lab": torch.tanh(tex), "height": height, "shaded_lab": shaded}
