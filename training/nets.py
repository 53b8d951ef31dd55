"""The trainable generator pair (generator + shadow generator) and its two shading routes.

``TrainGenerator`` holds ``generator`` and ``shadow`` under the same names as
``terrain_core.nn.inference.InferenceNet``, so its state dict (and the EMA copy's) loads into the
inference network as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from terrain_core.config import GeneratorConfig, ShadowConfig
from terrain_core.nn.color import lab_to_rgb
from terrain_core.nn.generator import Generator
from terrain_core.nn.layers import in_float32
from terrain_core.nn.shadow import ShadowGenerator


@dataclass
class GenOutput:
    rgb: torch.Tensor  # [N, 3, H, W] shaded terrain RGB in -1..1 (what D and the perceptual loss see)
    height: torch.Tensor  # [N, 1, H, W] -1..1
    texture_lab: torch.Tensor  # [N, 3, H, W] flat texture, normalised Lab
    rgb_flip: torch.Tensor | None = None  # second route: the flipped texture + height, shaded again
    height_flip: torch.Tensor | None = None
    onehot_flip: torch.Tensor | None = None  # [N, classes, H, W] segmentation flipped the same way


def lab_to_rgb_m11(lab: torch.Tensor) -> torch.Tensor:
    """Normalised Lab -> RGB in -1..1, in fp32 even under autocast (bf16 would band the colours)."""
    return in_float32(lab_to_rgb, lab) * 2.0 - 1.0


def flip_per_sample(x: torch.Tensor, lr: torch.Tensor, ud: torch.Tensor) -> torch.Tensor:
    """Flip each sample of ``x`` [N, C, H, W] left-right where ``lr`` [N] bool, up-down where ``ud``."""
    x = torch.where(lr[:, None, None, None], x.flip(3), x)
    return torch.where(ud[:, None, None, None], x.flip(2), x)


def draw_flips(n: int, gen: torch.Generator, no_identity: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample flips: lr, ud [n] bool on ``gen``'s device, each with p = 1/2 as the original's
    tf.image.random_flip_*.

    ``no_identity``: draw uniformly among the three real flips (lr, ud, both) instead, so that every
    sample of the second route is lit from another side.
    """
    if no_identity:
        k = torch.randint(1, 4, (n,), generator=gen, device=gen.device)
        return (k & 1).bool(), (k & 2).bool()
    r = torch.rand((n, 2), generator=gen, device=gen.device)
    return r[:, 0] < 0.5, r[:, 1] < 0.5


class TrainGenerator(nn.Module):
    def __init__(self, gen_cfg: GeneratorConfig, shadow_cfg: ShadowConfig):
        super().__init__()
        self.generator = Generator(gen_cfg)
        self.shadow = ShadowGenerator(shadow_cfg)

    def forward(
        self,
        onehot: torch.Tensor,
        z: torch.Tensor,
        noises: list[torch.Tensor],
        flip_lr: torch.Tensor | None = None,
        flip_ud: torch.Tensor | None = None,
    ) -> GenOutput:
        raw = self.generator(onehot, z, noises)  # [N, 4, H, W] pre-tanh Lab + height
        s = self.shadow(raw)
        out = GenOutput(
            rgb=lab_to_rgb_m11(s["shaded_lab"]),
            height=s["height"],
            texture_lab=s["texture_lab"],
        )
        if flip_lr is not None and flip_ud is not None:
            # Second route: texture, height and segmentation flipped together, then shaded again by the
            # same shadow generator. The light in the data always comes from the north-west, so any
            # shading baked into the texture shows up on the wrong side here and D can penalise it.
            both = flip_per_sample(torch.cat([raw, onehot.to(raw.dtype)], 1), flip_lr, flip_ud)
            s2 = self.shadow(both[:, :4])
            out.rgb_flip = lab_to_rgb_m11(s2["shaded_lab"])
            out.height_flip = s2["height"]
            out.onehot_flip = both[:, 4:].to(onehot.dtype)
        return out

    @torch.no_grad()
    def generate(self, onehot: torch.Tensor, z: torch.Tensor, noises: list[torch.Tensor]):
        """(texture RGB 0..1, height -1..1, shaded RGB 0..1), as InferenceNet returns them."""
        s = self.shadow(self.generator(onehot, z, noises))
        return lab_to_rgb(s["texture_lab"]), s["height"], lab_to_rgb(s["shaded_lab"])


@dataclass
class WarmStart:
    """What :func:`warm_start` did: names loaded, kept fresh (absent or another shape), unused in the file."""

    loaded: list[str]
    fresh: list[str]
    unused: list[str]

    def summary(self) -> str:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:4]) + (f" (+{len(xs) - 4} more)" if len(xs) > 4 else "")

        s = f"{len(self.loaded)} tensors loaded"
        if self.fresh:
            s += f"; {len(self.fresh)} kept fresh (absent or another shape in the file): {few(self.fresh)}"
        if self.unused:
            s += f"; {len(self.unused)} in the file unused: {few(self.unused)}"
        return s


def _grown_inputs(own: tuple[int, ...], file: tuple[int, ...]) -> bool:
    """True for conv weights [out, in, k, k] that differ from the file's only by more input channels."""
    return len(own) == 4 == len(file) and own[1] > file[1] and own[:1] + own[2:] == file[:1] + file[2:]


def warm_start(net: nn.Module, path: str, *extra: nn.Module) -> WarmStart:
    """Initialise ``net`` (a TrainGenerator; also each module in ``extra``, e.g. its EMA copy) from a model
    file wherever tensor names and shapes match, and convs that gained input channels (zero weights for
    the new inputs); everything else keeps its initialisation.

    Only ``.safetensors`` files are read (no pickle: loading a model never executes code). Raises
    ``ValueError`` saying what is wrong: a missing file, another format, or no tensor in common.
    """
    from pathlib import Path

    from terrain_core.model_format import ModelFileError, read_safetensors_header

    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        hint = f"; use {p.with_suffix('.safetensors').name} beside it" if p.suffix.lower() == ".onnx" else ""
        raise ValueError(f"init_from: {path} is not a .safetensors model file{hint}")
    if not p.is_file():
        raise ValueError(f"init_from: {path} does not exist")
    try:
        _, header = read_safetensors_header(p)
    except ModelFileError as e:
        raise ValueError(f"init_from: {e}") from None
    own = net.state_dict()
    take = sorted(k for k in own if k in header and tuple(own[k].shape) == header[k][1])
    grown = sorted(k for k in own if k in header and _grown_inputs(tuple(own[k].shape), header[k][1]))
    if not take and not grown:
        raise ValueError(
            f"init_from: {path} has no generator or shadow tensor of this model's names and shapes "
            "(is it a terrain model file?)"
        )
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as f:
        values = {k: f.get_tensor(k) for k in take}
        for k in grown:
            # A conv that gained input channels (say, the noise beside the segmentation map): the old
            # weights for the old inputs, zero for the new ones, so the network starts as the file's.
            old = f.get_tensor(k)
            w = torch.zeros(own[k].shape, dtype=old.dtype)
            w[:, : old.shape[1]] = old
            values[k] = w
    for module in (net, *extra):
        module.load_state_dict(values, strict=False)
    return WarmStart(
        loaded=take + grown,
        fresh=sorted(k for k in own if k not in values),
        unused=sorted(k for k in header if k not in values),
    )
