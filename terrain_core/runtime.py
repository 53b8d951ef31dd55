"""The inference API: load a model file, turn a class map into texture + height. One API, two runtimes.

    gen = TerrainGenerator.load("model.onnx")         # ONNX Runtime (what the Blender extension ships)
    gen = TerrainGenerator.load("model.safetensors")  # PyTorch (CPU / CUDA / MPS)
    gen = TerrainGenerator.load()                     # the built-in default model
    result = gen.generate(labels, seed=7)             # labels [H, W] uint8 class ids -> TerrainResult

Module import needs numpy only; onnxruntime is imported when an ONNX model is loaded and torch when a
safetensors model is loaded, so this runs inside Blender with nothing but the extension's wheels.

Randomness enters only through the latent z and the noise maps, drawn in numpy from the seed
(:mod:`terrain_core.noise`) and fed to the network: both runtimes therefore give the same terrain for the
same map and seed, and a large map can be generated in tiles that each take their crop of one noise canvas
(when to tile, the layout and the blending: :mod:`terrain_core.tiling`).
Loading never unpickles: safetensors holds raw tensors and a JSON header, ONNX a protobuf graph.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core import tiling
from terrain_core.config import GeneratorConfig, ShadowConfig, preset
from terrain_core.labels import MAX_SIDE, LabelMapError, check_labels
from terrain_core.model_format import (  # noqa: F401  (the format's names stay importable from here)
    METADATA_KEY,
    MODELS_DIR,
    OUTPUT_NAMES,
    ModelFileError,
    build_metadata,
    choose_model_path,
    default_model_path,
    input_names,
    parse_meta_json,
    read_safetensors_header,
    validate_metadata,
)
from terrain_core.noise import GeneratorInputs, draw_inputs
from terrain_core.result import TerrainResult

_log = logging.getLogger("terrain_core")

UNTRAINED_PRESET = "small"
UNTRAINED_WARNING = (
    "terrain_core: no trained default model is shipped yet; using the '{preset}' generator with freshly "
    "initialised (untrained) weights, so the output is noise-like, not realistic terrain"
)
GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")


class GenerationCancelled(RuntimeError):
    """``generate`` stopped because its ``cancel`` was set: checked between tiles, and on ONNX Runtime
    also during a tile's run (which is then abandoned)."""


class RuntimeUnavailableError(RuntimeError):
    """The runtime a model file needs (torch for .safetensors, onnxruntime for .onnx) is not installed."""


# ------------------------------------------------------------------------------------------ model files


def read_model_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict of a model file (.safetensors or .onnx), validated; raises ``ModelFileError``."""
    p = _existing(path)
    if p.suffix.lower() == ".safetensors":
        meta, _ = read_safetensors_header(p)
    else:
        meta = _OnnxBackend.open(p, threads=1, optimization="disable")[1]
    validate_metadata(meta, str(p))
    return meta


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".safetensors", ".onnx"):
        raise ModelFileError(f"{p}: unknown model file type {p.suffix!r}; expected .onnx or .safetensors")
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    if not p.is_file():
        raise ModelFileError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: model file is empty")
    return p


def untrained_metadata() -> dict:
    """The metadata of the untrained stand-in (``TerrainGenerator.untrained_default``), made without torch."""
    return build_metadata(
        preset(UNTRAINED_PRESET),
        ShadowConfig(),
        name=f"untrained-{UNTRAINED_PRESET}",
        provenance={"untrained": True, "preset": UNTRAINED_PRESET, "init_seed": 0},
        created="",
    )


# ------------------------------------------------------------------------------------------- backends


class _OnnxBackend:
    name = "onnxruntime"

    def __init__(self, session: Any, gen: GeneratorConfig, threads: int | None):
        self.session = session
        self.threads = threads
        self.device = "cpu" if session.get_providers()[0] == "CPUExecutionProvider" else "cuda"
        self._inputs = input_names(gen)

    @staticmethod
    def open(path: Path, *, threads: int | None, optimization: str, device: str = "cpu"):
        """(session, metadata dict) for an .onnx file, or ``ModelFileError``."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailableError(
                "loading an .onnx model needs onnxruntime (pip install onnxruntime)"
            ) from None
        if optimization not in GRAPH_OPTIMIZATION:
            raise ValueError(f"optimization must be one of {GRAPH_OPTIMIZATION}, got {optimization!r}")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        so.intra_op_num_threads = int(threads or 0)  # 0 = ONNX Runtime's default (all cores)
        so.inter_op_num_threads = 1  # the graph is a chain: parallel branches gain nothing
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # errors only: a bad file becomes our ModelFileError, not log spam
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeUnavailableError("this onnxruntime build has no CUDA support (onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            raise ValueError(f"the ONNX runtime supports device 'cpu', 'cuda' or 'auto', got {device!r}")
        try:
            session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types for bad files
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{path}: not a readable ONNX model ({first})") from None
        meta = parse_meta_json(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), str(path))
        return session, meta

    def check(self, source: str) -> None:
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != self._inputs or got_out != list(OUTPUT_NAMES):
            raise ModelFileError(
                f"{source}: the ONNX graph's inputs/outputs {got_in} -> {got_out} do not match its metadata "
                f"({self._inputs} -> {list(OUTPUT_NAMES)})"
            )

    def run(self, onehot: np.ndarray, z: np.ndarray, noises: tuple[np.ndarray, ...], cancel: Any = None):
        feed = dict(zip(self._inputs, (onehot, z, *noises), strict=True))
        if cancel is None:
            return tuple(self.session.run(list(OUTPUT_NAMES), feed))
        # ONNX Runtime can abandon a run from another thread (RunOptions.terminate): a watcher turns the
        # cancel event into that flag, so Cancel in Blender answers within ~50 ms even inside one large tile.
        import onnxruntime as ort

        options = ort.RunOptions()
        finished = threading.Event()

        def watch() -> None:
            while not finished.wait(0.05):
                if _is_cancelled(cancel):
                    options.terminate = True
                    return

        watcher = threading.Thread(target=watch, name="terrain-cancel-watch", daemon=True)
        watcher.start()
        try:
            return tuple(self.session.run(list(OUTPUT_NAMES), feed, run_options=options))
        except Exception:
            if options.terminate:
                raise GenerationCancelled("generation cancelled") from None
            raise
        finally:
            finished.set()
            watcher.join()


class _TorchBackend:
    name = "torch"

    def __init__(self, net: Any, device: str, threads: int | None):
        self.net = net
        self.device = device
        self.threads = threads

    @staticmethod
    def import_torch():
        try:
            import torch
        except ImportError:
            raise RuntimeUnavailableError(
                "loading a .safetensors model needs PyTorch (pip install 'terrain-gan[torch]'); "
                "use the .onnx export of the same model with ONNX Runtime instead"
            ) from None
        return torch

    @staticmethod
    def pick_device(device: str) -> str:
        torch = _TorchBackend.import_torch()
        if device == "auto":
            if torch.cuda.is_available():
                return "cuda"
            mps = getattr(torch.backends, "mps", None)
            return "mps" if mps is not None and mps.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeUnavailableError("device 'cuda' requested but torch sees no CUDA GPU")
        if device == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            raise RuntimeUnavailableError("device 'mps' requested but torch has no MPS support here")
        if not (device == "cpu" or device == "mps" or device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]', 'mps' or 'auto', got {device!r}")
        return device

    @classmethod
    def build(cls, gen: GeneratorConfig, shadow: ShadowConfig, device: str, threads: int | None):
        torch = cls.import_torch()
        from terrain_core.nn.inference import InferenceNet

        if threads:
            torch.set_num_threads(int(threads))  # process-wide in torch: documented on TerrainGenerator.load
        device = cls.pick_device(device)
        net = InferenceNet(gen, shadow).eval()
        return cls(net, device, threads)

    def load_weights(self, path: Path, header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        """Strict key and shape check against the header first (a clear list), then load the tensors."""
        expected = {k: tuple(v.shape) for k, v in self.net.state_dict().items()}
        missing = sorted(set(expected) - set(header))
        unexpected = sorted(set(header) - set(expected))
        wrong = sorted(k for k in set(expected) & set(header) if expected[k] != header[k][1])
        bad_dtype = sorted(k for k, (dt, _) in header.items() if dt not in ("F32", "F16", "BF16", "F64"))
        if missing or unexpected or wrong or bad_dtype:

            def few(xs: list[str]) -> str:
                return ", ".join(xs[:3]) + (f" (+{len(xs) - 3} more)" if len(xs) > 3 else "")

            parts = []
            if missing:
                parts.append(f"missing weights: {few(missing)}")
            if unexpected:
                parts.append(f"unexpected weights: {few(unexpected)}")
            if wrong:
                parts.append(
                    "wrong shapes: " + few([f"{k} {header[k][1]} (expected {expected[k]})" for k in wrong])
                )
            if bad_dtype:
                parts.append(f"non-float weights: {few(bad_dtype)}")
            raise ModelFileError(
                f"{path}: the weights do not fit the network described by its own metadata; "
                + "; ".join(parts)
            )
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ModelFileError(f"{path}: cannot read the weights ({e})") from None
        state = self.net.state_dict()
        tensors = {k: v.to(state[k].dtype) for k, v in tensors.items()}
        self.net.load_state_dict(tensors, strict=True)

    def to_device(self) -> None:
        self.net.to(self.device)

    def run(self, onehot: np.ndarray, z: np.ndarray, noises: tuple[np.ndarray, ...], cancel: Any = None):
        # A torch forward cannot be interrupted: cancel is honoured between tiles only.
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        with torch.inference_mode():
            args = [torch.from_numpy(a).to(self.device) for a in (onehot, z, *noises)]
            out = self.net(*args)
            return tuple(t.float().cpu().numpy() for t in out)


# ------------------------------------------------------------------------------------ network inputs


def _one_hot(lab: np.ndarray, num_classes: int) -> np.ndarray:
    """[H, W] ids -> [1, C, H, W] float32 (ids already checked)."""
    return (lab[None, None] == np.arange(num_classes, dtype=lab.dtype)[None, :, None, None]).astype(
        np.float32
    )


def _checked_map_and_seed(labels: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """(the class map as the result's own uint8 copy, the seed as an int), or ``LabelMapError`` /
    ``ValueError`` saying what is wrong."""
    lab = np.asarray(labels)
    check_labels(lab)
    h, w = lab.shape
    if max(h, w) > MAX_SIDE:
        raise LabelMapError(f"map of {w}x{h} pixels is larger than the supported {MAX_SIDE} per side")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return lab.astype(np.uint8, copy=True), int(seed)  # not the caller's array


def _is_cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


# ---------------------------------------------------------------------------------------------- the API


class TerrainGenerator:
    """A loaded model: ``generate(labels, seed)`` -> :class:`TerrainResult`, same on both runtimes."""

    def __init__(self, backend: Any, meta: dict, source: str, *, untrained: bool = False):
        self._backend = backend
        self._meta = meta
        self.config, self.shadow_config = validate_metadata(meta, source)
        self.source = source
        # Also a file exported from untrained weights (a stand-in) says so in its provenance.
        prov = meta.get("provenance")
        self.untrained = bool(untrained or (isinstance(prov, dict) and prov.get("untrained") is True))
        lo, hi = meta["height_range_m"]
        self.height_range_m = (float(lo), float(hi))
        self.name = str(meta.get("name") or Path(source).stem)
        self.tile_size = tiling.DEFAULT_TILE  # automatic tiling above this side length

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        optimization: str = "all",
    ) -> TerrainGenerator:
        """Load ``.onnx`` (ONNX Runtime) or ``.safetensors`` (PyTorch) by suffix; None = built-in default.

        ``device``: "cpu" (default), "cuda", "mps" (torch only) or "auto" (the best available).
        ``threads``: CPU threads (None = the runtime's default). For torch this is process-wide
        (``torch.set_num_threads``). ``optimization``: ONNX Runtime graph optimisation level, one of
        "disable", "basic", "extended", "all".
        Raises ``ModelFileError`` for a missing or invalid file; never unpickles anything.
        """
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        path = choose_model_path(path)
        if path is None:
            return cls.untrained_default(device=device, threads=threads)
        p = _existing(path)
        if p.suffix.lower() == ".onnx":
            session, meta = _OnnxBackend.open(p, threads=threads, optimization=optimization, device=device)
            gen, _ = validate_metadata(meta, str(p))
            backend = _OnnxBackend(session, gen, threads)
            backend.check(str(p))
        else:
            meta, header = read_safetensors_header(p)
            gen, shadow = validate_metadata(meta, str(p))
            backend = _TorchBackend.build(gen, shadow, device, threads)
            backend.load_weights(p, header)
            backend.to_device()
        return cls(backend, meta, str(p))

    @classmethod
    def from_net(
        cls,
        net: Any,
        gen: GeneratorConfig,
        shadow: ShadowConfig,
        *,
        metadata: dict | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> TerrainGenerator:
        """Wrap an in-memory ``InferenceNet`` (e.g. during training) in the same API, torch runtime.

        The net is shared, not copied: it is put in eval mode and moved to ``device``.
        """
        md = dict(metadata or {})
        meta = build_metadata(gen, shadow, name=md.pop("name", "in-memory"), **md)
        backend = _TorchBackend(net.eval(), _TorchBackend.pick_device(device), threads)
        backend.to_device()
        return cls(backend, meta, meta["name"])

    @classmethod
    def untrained_default(cls, *, device: str = "cpu", threads: int | None = None) -> TerrainGenerator:
        """The stand-in while no default model is shipped: the 'small' preset, seeded fresh weights."""
        torch = _TorchBackend.import_torch()
        gen, shadow = preset(UNTRAINED_PRESET), ShadowConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same untrained weights every time: runs stay reproducible
            backend = _TorchBackend.build(gen, shadow, device, threads)
        backend.to_device()
        meta = untrained_metadata()
        _log.warning(UNTRAINED_WARNING.format(preset=UNTRAINED_PRESET))
        return cls(backend, meta, meta["name"], untrained=True)

    # ------------------------------------------------------------------------------------ properties
    @property
    def runtime(self) -> str:
        """The runtime in use: 'onnxruntime' or 'torch'."""
        return self._backend.name

    @property
    def threads(self) -> int | None:
        return self._backend.threads

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def info(self) -> dict:
        """The model's metadata (config, classes, version, height range, provenance) plus how it runs."""
        out = json.loads(json.dumps(self._meta))  # a deep copy the caller may change
        out.update(path=self.source, runtime=self.runtime, device=self.device, untrained=self.untrained)
        return out

    def __repr__(self) -> str:
        return f"TerrainGenerator({self.name!r}, runtime={self.runtime!r}, device={self.device!r})"

    # ------------------------------------------------------------------------------------ generation
    def generate(
        self,
        labels: np.ndarray,
        seed: int = 0,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        progress: Callable[[float], Any] | None = None,
        cancel: Any = None,
    ) -> TerrainResult:
        """Texture, shaded preview and height for a class map [H, W] (ids 0..6), deterministic per seed.

        Any size: the map is reflect-padded to a multiple of the network's downsampling and cropped back.
        ``tile``: None = tile automatically when a side exceeds ``self.tile_size``; 0 = never tile; N = tiles
        of N pixels (rounded down to the downsampling) sharing ``overlap`` pixels (None: 64, at most half a
        tile), blended. The noise is drawn once for the whole canvas, so tiles agree where they overlap.
        ``progress(fraction)`` is called at 0.0 and after each tile; ``cancel`` (a ``threading.Event`` or a
        callable) is checked before each tile and raises ``GenerationCancelled``; on ONNX Runtime it is also
        polled from a helper thread during each run, which it then aborts.
        """
        t_start = time.perf_counter()
        lab, seed = _checked_map_and_seed(labels, seed)
        h, w = lab.shape
        hp, wp = tiling.padded_shape(h, w, self.config.downsample)
        padded = tiling.pad_labels(lab, hp, wp)
        inputs = draw_inputs(self.config, hp, wp, seed)
        timings = {"prepare": time.perf_counter() - t_start}

        tile_px = self.choose_tile(h, w, tile)
        overlap = tiling.tile_overlap(overlap, tile_px)
        if progress is not None:
            progress(0.0)
        if tile_px is None:
            texture, shaded_img, height_img = self._generate_whole(
                padded, inputs, (h, w), progress, cancel, timings
            )
        else:
            texture, shaded_img, height_img = self._generate_tiled(
                padded, inputs, (h, w), tile_px, overlap, progress, cancel, timings
            )
        for a in (texture, shaded_img):
            np.clip(a, 0.0, 1.0, out=a)
        np.clip(height_img, -1.0, 1.0, out=height_img)
        timings["total"] = time.perf_counter() - t_start
        return TerrainResult(
            labels=lab,
            texture=texture,
            shaded=shaded_img,
            height=height_img,
            height_range_m=self.height_range_m,
            seed=seed,
            model=self.name,
            timings=timings,
        )

    def choose_tile(self, height: int, width: int, tile: int | None = None) -> int | None:
        """The tile side (pixels) ``generate`` uses for a height x width map with this ``tile`` argument,
        or None for one untiled pass (:func:`terrain_core.tiling.choose_tile`)."""
        ds = self.config.downsample
        hp, wp = tiling.padded_shape(height, width, ds)
        return tiling.choose_tile(tile, hp, wp, ds, self.tile_size)

    def _generate_whole(self, padded, inputs: GeneratorInputs, size, progress, cancel, timings):
        """One pass of the network over the padded canvas, cropped back to the map's size."""
        h, w = size
        if _is_cancelled(cancel):
            raise GenerationCancelled("generation cancelled")
        t0 = time.perf_counter()
        tex, height, shaded = self._backend.run(
            _one_hot(padded, self.config.num_classes), inputs.z, inputs.noises, cancel
        )
        timings["network"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        texture = np.ascontiguousarray(tex[0, :, :h, :w].transpose(1, 2, 0), dtype=np.float32)
        shaded_img = np.ascontiguousarray(shaded[0, :, :h, :w].transpose(1, 2, 0), dtype=np.float32)
        height_img = np.ascontiguousarray(height[0, 0, :h, :w], dtype=np.float32)
        timings["assemble"] = time.perf_counter() - t0
        timings["tiles"] = 1.0
        if progress is not None:
            progress(1.0)
        return texture, shaded_img, height_img

    def _generate_tiled(
        self, padded, inputs: GeneratorInputs, size, tile, overlap, progress, cancel, timings
    ):
        """Tiles over the padded canvas, blended into float32 output buffers of the map's size.

        Memory: the outputs (7 floats per pixel), the noise canvas, and one tile's network activations.
        """
        h, w = size
        hp, wp = padded.shape
        cfg = self.config
        ds = cfg.downsample
        scales = cfg.block_scales()
        th, ys = tiling.tile_layout(hp, tile, overlap, ds)
        tw, xs = tiling.tile_layout(wp, tile, overlap, ds)
        wy, wx = tiling.blend_weights(ys, th, hp), tiling.blend_weights(xs, tw, wp)
        texture = np.zeros((h, w, 3), np.float32)
        shaded = np.zeros((h, w, 3), np.float32)
        height = np.zeros((h, w), np.float32)
        n_tiles = len(ys) * len(xs)
        t_net = t_blend = 0.0
        done = 0
        for iy, y0 in enumerate(ys):
            for ix, x0 in enumerate(xs):
                if _is_cancelled(cancel):
                    raise GenerationCancelled(f"generation cancelled after {done} of {n_tiles} tiles")
                t0 = time.perf_counter()
                tin = inputs.crop(y0, x0, th, tw, ds, scales)
                onehot = _one_hot(padded[y0 : y0 + th, x0 : x0 + tw], cfg.num_classes)
                tex, hgt, shd = self._backend.run(onehot, tin.z, tin.noises, cancel)
                t1 = time.perf_counter()
                # Only the part of the tile inside the unpadded map is kept.
                ch, cw = min(th, h - y0), min(tw, w - x0)
                if ch > 0 and cw > 0:
                    wt = wy[iy][:ch, None] * wx[ix][None, :cw]  # [ch, cw]
                    win = (slice(y0, y0 + ch), slice(x0, x0 + cw))
                    texture[win] += tex[0, :, :ch, :cw].transpose(1, 2, 0) * wt[..., None]
                    shaded[win] += shd[0, :, :ch, :cw].transpose(1, 2, 0) * wt[..., None]
                    height[win] += hgt[0, 0, :ch, :cw] * wt
                t_net += t1 - t0
                t_blend += time.perf_counter() - t1
                done += 1
                if progress is not None:
                    progress(done / n_tiles)
        timings.update(network=t_net, assemble=t_blend, tiles=float(n_tiles))
        return texture, shaded, height
