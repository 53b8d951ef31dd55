"""Generator configuration: one frozen dataclass, presets for each version of the original.

Pure Python (no torch): the inference API reads it back from a model file's metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CONV_TYPES = ("spade", "modconv")  # v1.0 SPADE-norm + conv; v1.1+ segmentation-modulated convolution
OUTPUT_MODES = (
    "residual",  # residual stack, one final 1x1 conv to colour space (the original's best; default)
    "skip_rgb",  # StyleGAN2-style: a 1x1 "toRGB" per stage, upsampled and summed in colour space
    "skip_features",  # per-stage features projected, upsampled and summed in feature space, then 1x1 conv
)


@dataclass(frozen=True)
class GeneratorConfig:
    num_classes: int = 7  # segmentation classes (one-hot input channels)
    z_dim: int = 16  # latent size; z ~ U[0, 1) per sample, drawn outside the network
    # Channels of each stage, coarsest first. Stage i works at 1/2**(len-1-i) of the output size, so 6
    # stages mean inputs are processed natively at multiples of 32 (other sizes are padded).
    stage_channels: tuple[int, ...] = (256, 256, 128, 64, 32, 16)
    blocks_per_stage: tuple[int, ...] = (1, 2, 1, 1, 1, 1)  # residual blocks in each stage
    conv_type: str = "modconv"  # one of CONV_TYPES
    # SPADE norms (every conv with conv_type="spade"; with "modconv", only the SPADE shortcuts): hidden
    # channels and kernel of the segmap -> gamma/beta convs. The original's 128 and 5x5 run at every
    # resolution, up to half the output size, and cost a small generator most of its time.
    spade_hidden: int = 128
    spade_kernel: int = 5
    # Stages (indices into stage_channels) whose blocks use local self-attention for their first conv;
    # () = no attention. The original v1.2 uses the first two upsampling stages of four: (2, 3).
    attention_stages: tuple[int, ...] = ()
    attention_kernel: int = 9  # neighbourhood size k (k x k) of local self-attention
    attention_heads: int = 1  # heads of local self-attention (the original: 1)
    # Scaled Sum in the style branch of modulated convs (v1.2): features averaged over a binary partition
    # tree of the image. Applied in stages whose feature maps are at least scaled_sum_min_size (at the
    # nominal 256x256 input) and at most scaled_sum_max_stage; off when scaled_sum is False.
    scaled_sum: bool = False
    scaled_sum_levels: int = 4  # partition tree depth: 2x2, 4x4, ..., 2**levels blocks per side
    scaled_sum_stages: tuple[int, ...] = ()  # stages using it (v1.2: every stage at >= 8 and <= 64 px)
    noise: bool = True  # StyleGAN-style noise injection at the start of every residual block
    # The block's noise map also enters every modulation beside the segmentation map (OASIS's "3D
    # noise", Schonfeld et al. 2021): the style, not only an additive term, then varies per pixel with the
    # seed, which is what lets a seed change landforms. False for models made before it existed.
    noise_style: bool = False
    output_mode: str = "residual"  # one of OUTPUT_MODES
    # Shortcut of blocks whose channel count changes: "spade" (SPADE norm + 1x1 conv, the original in every
    # version) or "modconv" (a modulated 1x1 conv). Keep "spade" with modulated convs: their demodulation
    # makes each conv's output about 1/sqrt(area) of its input whatever the weights, and the shortcut's
    # instance norm is what brings the segmentation-driven signal back to unit scale.
    shortcut: str = "spade"
    # Demodulation of modulated convs: the original divides by sqrt(sum w^2 * H * W + sum_{H,W,C} s^2),
    # which makes the output scale as 1/sqrt(H * W), so a model trained on 256 px crops came out flat at
    # 1024 px and tiles did not match the whole map. We use the per-pixel mean of the style term times a
    # fixed area: the feature size at this input size (identical to the original at this size). 0 = the
    # original's size-dependent formula.
    demod_ref_size: int = 256
    out_channels: int = 4  # Lab texture (3) + height (1)
    leaky_slope: float = 0.2

    def __post_init__(self) -> None:
        if self.conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {self.conv_type!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if len(self.stage_channels) != len(self.blocks_per_stage):
            raise ValueError("stage_channels and blocks_per_stage must have the same length")
        if len(self.stage_channels) < 1 or min(self.stage_channels) < 1 or min(self.blocks_per_stage) < 1:
            raise ValueError("need at least one stage, with positive channels and block counts")
        for name in ("attention_stages", "scaled_sum_stages"):
            bad = [s for s in getattr(self, name) if not 0 <= s < len(self.stage_channels)]
            if bad:
                raise ValueError(f"{name} has stage indices {bad} outside 0..{len(self.stage_channels) - 1}")
        if self.shortcut not in ("spade", "modconv"):
            raise ValueError(f"shortcut must be 'spade' or 'modconv', got {self.shortcut!r}")
        if self.demod_ref_size < 0:
            raise ValueError(f"demod_ref_size must be >= 0, got {self.demod_ref_size}")
        if self.attention_kernel < 1 or self.attention_kernel % 2 == 0:
            raise ValueError(f"attention_kernel must be odd and positive, got {self.attention_kernel}")
        if self.attention_stages and self.conv_type != "modconv":
            raise ValueError("attention_stages needs conv_type='modconv'")
        if self.scaled_sum and self.conv_type != "modconv":
            raise ValueError("scaled_sum needs conv_type='modconv'")

    @property
    def downsample(self) -> int:
        """Input sizes are processed natively at multiples of this (32 for the original's 6 stages)."""
        return 2 ** (len(self.stage_channels) - 1)

    def block_scales(self) -> list[int]:
        """Downscale factor of every residual block in order (one noise map per block)."""
        out = []
        for i, n in enumerate(self.blocks_per_stage):
            out += [2 ** (len(self.stage_channels) - 1 - i)] * n
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown generator config keys: {unknown}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> GeneratorConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ShadowConfig:
    hidden: int = 32  # channels of the 3x3 conv over the height gradients
    leaky_slope: float = 0.2


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 7 + 3 + 1 + 2  # segmentation + terrain RGB + height + its two finite differences
    base_channels: int = 96  # first conv (v1.2: 96, v1.0: 128); doubles per stride-2 conv, capped
    max_channels: int = 512
    num_convs: int = 3  # stride-2 convs per scale
    scales: tuple[int, ...] = (1, 4, 16)  # input downscale of each patch discriminator


@dataclass(frozen=True)
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    shadow: ShadowConfig = field(default_factory=ShadowConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


PRESETS: dict[str, GeneratorConfig] = {
    "seed-1.0": GeneratorConfig(stage_channels=(768, 768, 384, 192, 96, 48), conv_type="spade", noise=True),
    "seed-1.1": GeneratorConfig(stage_channels=(256, 256, 128, 64, 32, 16), conv_type="modconv"),
    "seed-1.2": GeneratorConfig(
        stage_channels=(256, 256, 128, 64, 32, 16),
        conv_type="modconv",
        attention_stages=(2, 3),
        attention_kernel=9,
        scaled_sum=True,
        scaled_sum_stages=(0, 1, 2, 3),  # at 256x256 inputs: 8, 16, 32, 64 px (the original's sizes)
    ),
    # Sized for CPU training and ~0.3 s per 512x512 map through ONNX Runtime on 2 cores: the SPADE
    # shortcuts' branch is 32 channels 3x3 (the original's 128 channels 5x5 made it 2.5x slower).
    "small": GeneratorConfig(
        stage_channels=(96, 96, 64, 32, 16, 16),
        conv_type="modconv",
        spade_hidden=32,
        spade_kernel=3,
        noise_style=True,
    ),
    # Tests: seconds per training step on CPU.
    "tiny": GeneratorConfig(stage_channels=(16, 16, 8, 8, 8, 8), conv_type="modconv"),
}

DISCRIMINATOR_PRESETS: dict[str, DiscriminatorConfig] = {
    "seed-1.0": DiscriminatorConfig(base_channels=128),
    "seed-1.1": DiscriminatorConfig(base_channels=96),
    "seed-1.2": DiscriminatorConfig(base_channels=96),
    "small": DiscriminatorConfig(base_channels=48, max_channels=256),
    "tiny": DiscriminatorConfig(base_channels=8, max_channels=32),
}


def preset(name: str) -> GeneratorConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
