"""The generator: one-hot segmentation + latent z + noise maps -> raw Lab texture and height (pre-tanh).

Layout (SPEC.md): z -> dense -> C0 channels tiled over an (H/f, W/f) grid, f = cfg.downsample; stages of
residual blocks per cfg.stage_channels / cfg.blocks_per_stage with bilinear x2 between stages; then one of
three output architectures (cfg.output_mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from terrain_core.config import GeneratorConfig
from terrain_core.nn.layers import (
    LocalSelfAttention,
    ModulatedConv,
    NoiseInjection,
    SPADEConv,
    SPADENorm,
    conv2d,
    in_float32,
    resize_to,
    scaled_sum_grids,
    upsample2,
)


def _exporting() -> bool:
    """True while torch.export / dynamo traces the model: value checks (NaN) cannot be traced."""
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    if getattr(compiler, "is_exporting", None) is not None and compiler.is_exporting():
        return True
    return bool(compiler.is_compiling())


class ResBlock(nn.Module):
    """Noise injection, leaky ReLU, conv to min(cin, cout), leaky ReLU, conv to cout, plus the input
    (through a normalised 1x1 conv without bias when cin != cout).

    conv_type "spade": every conv is "SPADE norm, leaky ReLU, conv" (v1.0). "modconv": segmentation-
    modulated convs (v1.1); ``attention`` replaces the first conv by local self-attention (v1.2).
    shortcut "spade" (the original in every version) or "modconv" (a modulated 1x1 conv: the same
    job at a fraction of the cost, since SPADE's 128-channel 5x5 convs at full resolution dominate a
    small generator's time).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        seg_channels: int,
        conv_type: str,
        shortcut: str,
        noise: bool,
        slope: float,
        noise_style: bool = False,
        spade_hidden: int = 128,
        spade_kernel: int = 5,
        attention: bool = False,
        attention_kernel: int = 9,
        attention_heads: int = 1,
        grids: tuple[int, ...] | None = None,
        area: float | None = None,
    ):
        super().__init__()
        cmid = min(cin, cout)
        self.conv_type, self.slope = conv_type, slope
        self.noise_style = noise_style
        seg_channels += int(noise_style)  # the noise map rides along as one more segmentation channel
        self.noise = NoiseInjection(cin) if noise else None
        self.attention = attention
        if conv_type == "spade":
            self.conv1 = SPADEConv(cin, cmid, 3, seg_channels, spade_hidden, spade_kernel, slope)
            self.conv2 = SPADEConv(cmid, cout, 3, seg_channels, spade_hidden, spade_kernel, slope)
        else:
            if attention:
                self.conv1 = LocalSelfAttention(cin, cmid, attention_kernel, attention_heads)
            else:
                self.conv1 = ModulatedConv(cin, cmid, 3, seg_channels, grids, area)
            self.conv2 = ModulatedConv(cmid, cout, 3, seg_channels, grids, area)
        self.shortcut_kind = shortcut if cin != cout else None
        if self.shortcut_kind == "spade":
            self.short_norm = SPADENorm(cin, seg_channels, spade_hidden, spade_kernel)
            self.short_conv = conv2d(cin, cout, 1, bias=False)
        elif self.shortcut_kind == "modconv":
            self.short_mod = ModulatedConv(cin, cout, 1, seg_channels, grids, area)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # x [N, Cin, h, w], seg [N, S, h, w] (resized), noise [N, 1, h, w] -> [N, Cout, h, w]
        h = self.noise(x, noise) if self.noise is not None else x
        if self.noise_style:
            seg = torch.cat([seg, noise.to(seg.dtype)], dim=1)  # [N, S + 1, h, w]
        if self.conv_type == "spade":
            h = self.conv1(h, seg)  # SPADE, leaky, conv
            h = self.conv2(h, seg)
        else:
            h = F.leaky_relu(h, self.slope)
            h = self.conv1(h) if self.attention else self.conv1(h, seg)
            h = self.conv2(F.leaky_relu(h, self.slope), seg)
        if self.shortcut_kind == "spade":
            x = self.short_conv(self.short_norm(x, seg))
        elif self.shortcut_kind == "modconv":
            x = self.short_mod(x, seg)
        return h + x


class Generator(nn.Module):
    """forward(onehot [N, classes, H, W], z [N, z_dim], noises) -> raw [N, out_channels, H, W] (pre-tanh).

    ``noises``: one [N, 1, H/f, W/f] map per residual block, f from cfg.block_scales(), as
    terrain_core.noise.draw_inputs makes them (also when cfg.noise is False: they are then ignored).
    H and W must be multiples of cfg.downsample.
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        n_st = len(cfg.stage_channels)
        shortcut = cfg.shortcut
        ref = cfg.demod_ref_size
        slope = cfg.leaky_slope
        self.dense = conv2d(cfg.z_dim, cfg.stage_channels[0], 1)  # a dense layer, as a 1x1 conv on [N,z,1,1]
        self.stages = nn.ModuleList()
        cin = cfg.stage_channels[0]
        for s, (cout, nblocks) in enumerate(zip(cfg.stage_channels, cfg.blocks_per_stage, strict=True)):
            scale = 2 ** (n_st - 1 - s)  # this stage's features are 1/scale of the input size
            min_size = cfg.downsample // scale  # feature size at the smallest valid input
            grids = None
            if cfg.scaled_sum and s in cfg.scaled_sum_stages:
                grids = scaled_sum_grids(cfg.scaled_sum_levels, min_size)
            area = float((ref / scale) ** 2) if ref > 0 else None
            blocks = nn.ModuleList()
            for _ in range(nblocks):
                blocks.append(
                    ResBlock(
                        cin,
                        cout,
                        seg_channels=cfg.num_classes,
                        conv_type=cfg.conv_type,
                        shortcut=shortcut,
                        noise=cfg.noise,
                        noise_style=cfg.noise_style,
                        slope=slope,
                        spade_hidden=cfg.spade_hidden,
                        spade_kernel=cfg.spade_kernel,
                        attention=s in cfg.attention_stages,
                        attention_kernel=cfg.attention_kernel,
                        attention_heads=cfg.attention_heads,
                        grids=grids,
                        area=area,
                    )
                )
                cin = cout
            self.stages.append(blocks)
        last = cfg.stage_channels[-1]
        if cfg.output_mode == "residual":
            self.to_out = conv2d(last, cfg.out_channels, 1)
        elif cfg.output_mode == "skip_rgb":
            # StyleGAN2-style: every stage writes colour (+ height); coarser outputs are upsampled and added
            self.to_out = nn.ModuleList(conv2d(c, cfg.out_channels, 1) for c in cfg.stage_channels)
        else:  # skip_features
            self.proj = nn.ModuleList(conv2d(c, last, 1) for c in cfg.stage_channels)
            self.to_out = conv2d(last, cfg.out_channels, 1)

    # ------------------------------------------------------------------------------------------ checks

    # Whether forward also checks input values for NaN/inf. Shapes are always checked; the trainer turns
    # the value check off on its own networks: it draws z and the noise itself, and on a GPU every check
    # is a device-to-host sync.
    check_values: bool = True

    def check_inputs(self, onehot, z, noises, values: bool = True) -> None:
        """Raise ValueError with what is wrong and what to do; cheap, run at every eager forward."""
        cfg = self.cfg
        if not isinstance(onehot, torch.Tensor) or onehot.dim() != 4:
            shape = tuple(onehot.shape) if isinstance(onehot, torch.Tensor) else type(onehot).__name__
            raise ValueError(f"onehot must be a [N, {cfg.num_classes}, H, W] tensor, got {shape}")
        n, c, h, w = onehot.shape
        if c != cfg.num_classes:
            raise ValueError(
                f"onehot has {c} channels but the model has {cfg.num_classes} classes "
                f"(one-hot the class map with num_classes={cfg.num_classes})"
            )
        ds = cfg.downsample
        if h < ds or w < ds or h % ds or w % ds:
            raise ValueError(f"onehot size {h}x{w} must be positive multiples of {ds}; pad the map first")
        if not onehot.is_floating_point():
            raise ValueError(f"onehot must be a float tensor, got {onehot.dtype}")
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, cfg.z_dim):
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be [N={n}, {cfg.z_dim}], got {shape}")
        scales = cfg.block_scales()
        if not isinstance(noises, (list, tuple)) or len(noises) != len(scales):
            got = len(noises) if isinstance(noises, (list, tuple)) else type(noises).__name__
            raise ValueError(
                f"need {len(scales)} noise maps (one per residual block), got {got}; "
                "draw them with terrain_core.noise.draw_inputs"
            )
        for i, (nz, f) in enumerate(zip(noises, scales, strict=True)):
            want = (n, 1, h // f, w // f)
            if not isinstance(nz, torch.Tensor) or tuple(nz.shape) != want:
                shape = tuple(nz.shape) if isinstance(nz, torch.Tensor) else type(nz).__name__
                raise ValueError(f"noise map {i} must be {list(want)} (1/{f} of the input), got {shape}")
        if not values:
            return
        for name, t in (("onehot", onehot), ("z", z), *((f"noise map {i}", t) for i, t in enumerate(noises))):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or infinite values")

    # ----------------------------------------------------------------------------------------- forward

    def forward(self, onehot: torch.Tensor, z: torch.Tensor, noises) -> torch.Tensor:
        if not _exporting():
            self.check_inputs(onehot, z, noises, values=self.check_values)
        cfg = self.cfg
        ds = cfg.downsample
        h0, w0 = onehot.shape[2] // ds, onehot.shape[3] // ds
        x = self.dense(z[:, :, None, None])  # [N, C0, 1, 1]
        x = x.expand(-1, -1, h0, w0)  # [N, C0, H/f, W/f]: the same vector everywhere
        j = 0
        acc = None  # skip outputs: running sum, upsampled at each stage
        for s, blocks in enumerate(self.stages):
            if s > 0:
                x = upsample2(x)  # [N, C, 2h, 2w]
            seg = resize_to(onehot, x)  # [N, classes, h, w], once per stage
            for block in blocks:
                x = block(x, seg, noises[j])
                j += 1
            if cfg.output_mode == "skip_rgb":
                r = in_float32(self.to_out[s], F.leaky_relu(x, cfg.leaky_slope))  # [N, out, h, w] fp32
                acc = r if acc is None else upsample2(acc) + r
            elif cfg.output_mode == "skip_features":
                p = self.proj[s](x)  # [N, C_last, h, w]
                acc = p if acc is None else upsample2(acc) + p
        # The output heads run in fp32 under autocast (in_float32): they make the height.
        if cfg.output_mode == "residual":
            return in_float32(self.to_out, F.leaky_relu(x, cfg.leaky_slope))
        if cfg.output_mode == "skip_rgb":
            return acc
        return in_float32(self.to_out, F.leaky_relu(acc, cfg.leaky_slope))
