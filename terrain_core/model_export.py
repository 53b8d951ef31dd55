"""Export a trained generator (+ shadow generator) to the two model files the runtimes load.

One call writes both:

- ``NAME.safetensors``: every weight of ``InferenceNet`` plus our metadata (JSON, see :func:`build_metadata`)
  in the safetensors header, for the torch runtime (CPU / CUDA / MPS). Loading it never unpickles.
- ``NAME.onnx``: the same network traced with ``torch.onnx.export(dynamo=True)`` with dynamic batch,
  height and width, carrying the same metadata as ONNX ``metadata_props``, for ONNX Runtime (what the
  Blender extension ships: no torch there).

Both files are written as one ``output_set.OutputSet``: staged in the target folder and moved into place
together when complete, so a failed export leaves the previous files (or nothing), never a half-written
model.

torch, safetensors and onnx are imported inside the functions: this module is importable anywhere.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from terrain_core.config import GeneratorConfig, ShadowConfig
from terrain_core.model_format import (
    METADATA_KEY,
    MODELS_DIR,
    OUTPUT_NAMES,
    ModelFileError,
    build_metadata,
    input_names,
)
from terrain_core.output_set import OutputSet

ONNX_OPSET = 18


def _configs_of(model: Any, gen: GeneratorConfig | None, shadow: ShadowConfig | None):
    """Configs from the arguments, else from the modules (``.cfg`` / ``.config`` attributes)."""

    def find(obj: Any, kind: type) -> Any:
        for attr in ("cfg", "config", "gen_cfg", "shadow_cfg", "gen_config", "shadow_config"):
            v = getattr(obj, attr, None)
            if isinstance(v, kind):
                return v
        return None

    gen = gen or find(model, GeneratorConfig) or find(getattr(model, "generator", None), GeneratorConfig)
    shadow = shadow or find(model, ShadowConfig) or find(getattr(model, "shadow", None), ShadowConfig)
    if gen is None or shadow is None:
        raise ValueError(
            "cannot tell the generator/shadow configs of this model; pass gen_config= and shadow_config="
        )
    return gen, shadow


def _as_inference_net(model: Any, gen: GeneratorConfig, shadow: ShadowConfig):
    """An ``InferenceNet`` holding the given modules' weights (from a net, or a (generator, shadow) pair)."""
    from terrain_core.nn.inference import InferenceNet

    if isinstance(model, InferenceNet):
        return model
    if isinstance(model, (tuple, list)) and len(model) == 2:
        generator, shadow_net = model
    elif hasattr(model, "generator") and hasattr(model, "shadow"):
        generator, shadow_net = model.generator, model.shadow
    else:
        raise TypeError("export_model needs an InferenceNet, or a (generator, shadow) pair of modules")
    net = InferenceNet(gen, shadow)
    # Copy, not share: the export must not keep references into a training run's modules.
    net.generator.load_state_dict(generator.state_dict(), strict=True)
    net.shadow.load_state_dict(shadow_net.state_dict(), strict=True)
    return net


def _stems(out: str | os.PathLike | tuple) -> tuple[Path, Path]:
    if isinstance(out, (tuple, list)):
        st, ox = (Path(p) for p in out)
    else:
        stem = Path(out)
        if stem.suffix in (".safetensors", ".onnx"):
            stem = stem.with_suffix("")
        st, ox = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".onnx")
    if st.suffix != ".safetensors" or ox.suffix != ".onnx":
        raise ValueError(f"model paths must end in .safetensors and .onnx, got {st} and {ox}")
    return st, ox


def export_model(
    model: Any,
    out: str | os.PathLike | tuple,
    *,
    metadata: dict[str, Any] | None = None,
    gen_config: GeneratorConfig | None = None,
    shadow_config: ShadowConfig | None = None,
    onnx: bool = True,
    example_size: tuple[int, int] | None = None,
) -> tuple[Path, Path | None]:
    """Write ``out.safetensors`` and ``out.onnx`` (or the two paths given) from one model.

    ``model``: an ``InferenceNet``, or a ``(generator, shadow)`` pair, or anything with ``.generator`` and
    ``.shadow`` (e.g. a training module; pass an EMA generator for the best results).
    ``metadata``: optional ``name`` (str), ``height_range_m`` ((lo, hi) metres at normalised -1 and +1),
    ``provenance`` (free-form JSON dict: data, preset, steps, date, evaluation ...), ``created``.
    ``onnx=False`` writes only the safetensors file (fast; returns ``(path, None)``).
    Returns the two paths. Both files are complete or untouched: temp file + rename.
    """
    import torch

    md = dict(metadata or {})
    unknown = sorted(set(md) - {"name", "height_range_m", "provenance", "created"})
    if unknown:
        raise ValueError(f"unknown metadata keys {unknown}; put free-form facts under 'provenance'")
    gen, shadow = _configs_of(model, gen_config, shadow_config)
    st_path, onnx_path = _stems(out)
    meta = build_metadata(
        gen,
        shadow,
        name=md.get("name") or st_path.stem,
        **{k: md[k] for k in ("height_range_m", "provenance", "created") if k in md},
    )
    net = _as_inference_net(model, gen, shadow)
    was_training = net.training
    net = net.eval()
    # Both files are staged and committed together as one output set: a failure leaves the previous pair
    # (or nothing), never a new .safetensors beside an old .onnx.
    if onnx and st_path.parent != onnx_path.parent:
        raise ValueError(f"the two model files must go into one folder, got {st_path} and {onnx_path}")
    try:
        with OutputSet(st_path.parent, what="model folder") as out, torch.no_grad():
            _write_safetensors(net, out.path(st_path.name), meta)
            if onnx:
                _write_onnx(net, gen, out.path(onnx_path.name), meta, example_size)
            out.commit()
    finally:
        net.train(was_training)
    return st_path, (onnx_path if onnx else None)


def _write_safetensors(net: Any, path: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    # Own, contiguous CPU copies: safetensors refuses shared storage, and a GPU model must export too.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta, allow_nan=False)})


def _onnx_wrapper_cls():
    import torch

    class OnnxWrapper(torch.nn.Module):
        # A forward with one positional parameter per input: torch.export then names and shapes each.
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, onehot, z, *noises):
            return self.net(onehot, z, *noises)

    return OnnxWrapper


def _write_onnx(net: Any, gen: GeneratorConfig, path: Path, meta: dict[str, Any], example_size) -> None:
    import warnings

    import torch
    from torch.export import Dim

    ds = gen.downsample
    scales = gen.block_scales()
    # Example sizes: batch 2 and unequal H, W (>= 2 cells) so that no dimension is specialised to 1 or
    # unified with another while tracing.
    eh, ew = example_size or (2 * ds, 3 * ds)
    if eh % ds or ew % ds or eh < 2 * ds or ew < 2 * ds or eh == ew:
        raise ValueError(f"example_size must be unequal multiples of {ds}, at least {2 * ds}")
    g = torch.Generator().manual_seed(0)
    n = 2
    labels = torch.randint(0, gen.num_classes, (n, eh, ew), generator=g)
    onehot = torch.nn.functional.one_hot(labels, gen.num_classes).permute(0, 3, 1, 2).float()  # [N,7,H,W]
    z = torch.rand(n, gen.z_dim, generator=g)
    noises = [torch.randn(n, 1, eh // f, ew // f, generator=g) for f in scales]
    device = next(iter(net.parameters())).device
    args = tuple(t.to(device) for t in (onehot, z, *noises))

    # H = ds * hc and W = ds * wc: every noise map's size is a multiple of the same symbols, which tells
    # the exporter that all inputs agree (a free Dim per input would not).
    batch = Dim("batch", min=1, max=4096)
    hc, wc = Dim("hcells", min=1, max=4096), Dim("wcells", min=1, max=4096)
    dyn = {
        "onehot": {0: batch, 2: ds * hc, 3: ds * wc},
        "z": {0: batch},
        "noises": tuple({0: batch, 2: _times(ds // f, hc), 3: _times(ds // f, wc)} for f in scales),
    }
    wrapper = _onnx_wrapper_cls()(net).eval()
    # The exporter logs one warning per torchvision op it cannot register (torchvision is not used here).
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision-missing and tracer chatter; failures still raise
            program = torch.onnx.export(
                wrapper,
                args,
                dynamo=True,
                dynamic_shapes=dyn,
                input_names=input_names(gen),
                output_names=list(OUTPUT_NAMES),
                opset_version=ONNX_OPSET,
                external_data=False,
                verbose=False,
            )
        proto = program.model_proto
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta, allow_nan=False)
        proto.producer_name = "terrain_core.model_export"
        proto.doc_string = f"{meta['name']}: terrain generator (see metadata_props['{METADATA_KEY}'])"
        import onnx

        onnx.save_model(proto, str(path))
    finally:
        reg_log.setLevel(old_level)


def _times(k: int, dim):
    """``k * dim``; for k = 1 the symbol itself (torch.export wants the root Dim, not a derived one)."""
    return dim if k == 1 else k * dim


def install_default(
    src: str | os.PathLike | tuple, models_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """Copy an exported pair (``src.safetensors`` + ``src.onnx``) in as the built-in default model.

    Both files are checked first (valid exports, the same metadata: one model, not two), then copied to
    temporary names in ``models_dir`` (default: terrain_core/models) and renamed into place together.
    Returns the installed (default.safetensors, default.onnx).
    """
    import shutil

    # One-way: the runtime reads ONNX metadata with onnxruntime; it never imports this module.
    from terrain_core.runtime import read_model_metadata

    st_src, ox_src = _stems(src)
    meta_st, meta_ox = read_model_metadata(st_src), read_model_metadata(ox_src)
    if meta_st != meta_ox:
        raise ModelFileError(f"{st_src} and {ox_src} hold different metadata: they are not one export")
    dest = Path(models_dir) if models_dir is not None else MODELS_DIR
    targets = (dest / "default.safetensors", dest / "default.onnx")
    with OutputSet(dest, what="models folder") as out:
        for s, t in zip((st_src, ox_src), targets, strict=True):
            shutil.copyfile(s, out.path(t.name))
        out.commit()
    return targets
