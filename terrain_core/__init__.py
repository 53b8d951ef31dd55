"""terrain_core: paint a 7-class terrain map, get texture + height from a SPADE-style terrain GAN.

Importing this package needs numpy only: no torch, no Pillow, no bpy (it runs inside Blender from an
extension that bundles ONNX Runtime). torch is imported lazily by the torch runtime, export and training.

    from terrain_core import TerrainGenerator
    gen = TerrainGenerator.load()            # the built-in default model
    result = gen.generate(labels, seed=1)    # labels: [H, W] uint8 class ids 0..6
"""

# Keep in step with pyproject.toml's [project] version (a test checks).
__version__ = "0.1.0"

from terrain_core.labels import CLASSES, labels_from_rgb, rgb_from_labels  # noqa: E402
from terrain_core.result import TerrainResult  # noqa: E402
from terrain_core.runtime import TerrainGenerator  # noqa: E402

__all__ = [
    "CLASSES",
    "TerrainGenerator",
    "TerrainResult",
    "__version__",
    "labels_from_rgb",
    "rgb_from_labels",
]
