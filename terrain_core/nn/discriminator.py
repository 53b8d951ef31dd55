"""Multi-scale patch discriminator (SPEC.md) and the 13-channel input it judges."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from terrain_core.config import DiscriminatorConfig
from terrain_core.nn.layers import conv2d, finite_differences, symmetric_pad


def discriminator_input(onehot: torch.Tensor, rgb_m11: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
    """seg [N, 7, H, W] + terrain RGB in -1..1 [N, 3, H, W] + height [N, 1, H, W] + its row and column
    finite differences -> [N, 13, H, W]."""
    for name, t, c in (("onehot", onehot, None), ("rgb_m11", rgb_m11, 3), ("height", height, 1)):
        if t.dim() != 4 or (c is not None and t.shape[1] != c):
            raise ValueError(f"{name} must be [N, {c or 'classes'}, H, W], got {tuple(t.shape)}")
        if t.shape[0] != onehot.shape[0] or t.shape[2:] != onehot.shape[2:]:
            raise ValueError(
                f"{name} {tuple(t.shape)} does not match onehot {tuple(onehot.shape)} in N, H, W"
            )
    return torch.cat([onehot, rgb_m11, height, finite_differences(height)], dim=1)


class PatchDiscriminator(nn.Module):
    """Stride-2 3x3 convs doubling the channels (capped), SELU after each, then a 1x1 conv to logits."""

    def __init__(self, cin: int, base: int, cap: int, num_convs: int):
        super().__init__()
        chans = [min(base * 2**i, cap) for i in range(num_convs)]
        ins = [cin] + chans[:-1]
        self.convs = nn.ModuleList(conv2d(a, b, 3, stride=2) for a, b in zip(ins, chans, strict=True))
        self.to_logits = conv2d(chans[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # x [N, cin, H, W] -> logits [N, 1, H/2**num_convs, W/2**num_convs], features after each SELU
        feats = []
        for conv in self.convs:
            x = F.selu(conv(symmetric_pad(x, 1)))
            feats.append(x)
        return self.to_logits(x), feats


class MultiScaleDiscriminator(nn.Module):
    """One patch discriminator per scale in cfg.scales (input bilinearly downscaled by that factor).

    forward(x [N, cfg.in_channels, H, W]) -> [(logits, features) per scale]; H, W must be multiples of
    max(cfg.scales) * 2 ** cfg.num_convs for every scale's logits to cover the image exactly (not required).
    """

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleList(
            PatchDiscriminator(cfg.in_channels, cfg.base_channels, cfg.max_channels, cfg.num_convs)
            for _ in cfg.scales
        )

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"discriminator input must be [N, {self.cfg.in_channels}, H, W], got "
                f"{tuple(x.shape)}; build it with discriminator_input()"
            )
        h, w = x.shape[2], x.shape[3]
        smallest = max(self.cfg.scales)
        if h < smallest or w < smallest:
            raise ValueError(f"discriminator input {h}x{w} is smaller than its coarsest scale 1/{smallest}")
        out = []
        for s, net in zip(self.cfg.scales, self.nets, strict=True):
            # plain bilinear (no antialias), as the original's tf.image.resize
            if s == 1:
                xs = x
            else:
                xs = F.interpolate(x, size=(h // s, w // s), mode="bilinear", align_corners=False)
            out.append(net(xs))
        return out
