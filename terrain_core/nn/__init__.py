"""PyTorch side of the model: layers, generator, shadow generator, discriminator, Lab <-> RGB.

The only package of terrain_core that needs torch; importing this package does not import torch yet
(the helpers below import it when called), so `import terrain_core.nn` is safe anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from terrain_core.config import GeneratorConfig, ShadowConfig
    from terrain_core.nn.inference import InferenceNet


def build_inference_net(gen_cfg: GeneratorConfig, shadow_cfg: ShadowConfig | None = None) -> InferenceNet:
    """A freshly initialised InferenceNet in eval mode (load weights with load_state_dict)."""
    from terrain_core.config import ShadowConfig
    from terrain_core.nn.inference import InferenceNet

    return InferenceNet(gen_cfg, shadow_cfg if shadow_cfg is not None else ShadowConfig()).eval()


def param_count(module) -> int:
    """Number of trainable parameters of a torch module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["build_inference_net", "param_count"]
