"""The training configuration: one frozen dataclass, TOML presets, ``key=value`` overrides.

A preset file (``training/presets/NAME.toml``) sets any of the fields below at its top level, plus three
optional tables ``[generator]``, ``[discriminator]`` and ``[shadow]`` that override single fields of the
model preset named by ``model`` (``terrain_core.config.PRESETS``). ``--set key=value`` on the command line
does the same for one key (``--set g_lr=2e-4``, ``--set generator.noise=false``); values are read as TOML
(``[1, 2]``, ``true``, ``1e-4``) and as a plain string when that fails.

Defaults are the original's (TerrGen1.1.py, see SPEC.md); the options beyond it are off by default except
EMA, which changes nothing in training and only adds an averaged copy for export.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terrain_core.config import (
    DISCRIMINATOR_PRESETS,
    PRESETS,
    DiscriminatorConfig,
    GeneratorConfig,
    ShadowConfig,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets"
AMP_MODES = ("auto", "bf16", "fp16", "off")  # auto: bf16 on a GPU that has it, else fp16 on GPU, off on CPU
LR_SCHEDULES = ("constant", "cosine", "linear")
PERCEPTUAL_MODES = ("vgg", "fm", "off")  # vgg: VGG19 (falls back to D feature matching when no weights)


class ConfigError(ValueError):
    """A preset, file or override is wrong; the message says which key and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    # --- model -------------------------------------------------------------------------------------
    model: str = "seed-1.1"  # model preset name (terrain_core.config.PRESETS / DISCRIMINATOR_PRESETS)
    generator: dict = field(default_factory=dict)  # overrides of GeneratorConfig fields ({} = the preset)
    discriminator: dict = field(default_factory=dict)  # overrides of DiscriminatorConfig fields
    shadow: dict = field(default_factory=dict)  # overrides of ShadowConfig fields

    # --- data --------------------------------------------------------------------------------------
    crop: int = 256  # training crop side in pixels (multiple of the generator's downsample, 32 by default)
    batch_size: int = 4  # per process (the original: 5 in v1.0, 4 in v1.1, 1 in v1.2)
    workers: int = 4  # DataLoader worker processes per training process (0 = load in the main process;
    # -1 = the machine's CPU cores minus 2, shared among the processes on this node, at least 1)
    split: str = "train"  # dataset split to train on ("" = every map; "train" falls back to all maps)

    # --- length ------------------------------------------------------------------------------------
    epochs: int = 500  # passes over the data (the original: 500)
    max_steps: int = 0  # stop after this many batches in total (0 = run all epochs)
    max_minutes: float = 0.0  # stop (checkpoint, samples, export) after this much wall-clock time (0 = none)

    # --- optimisers (the original: Keras Adam; eps 1e-7 is Keras' default) -------------------------
    g_lr: float = 1e-4  # generator + shadow generator
    g_beta1: float = 0.5
    g_beta2: float = 0.999
    g_clip: float = 100.0  # global gradient-norm clip of G + shadow (0 = none)
    d_lr: float = 1e-3
    d_beta1: float = 0.5
    d_beta2: float = 0.999
    d_clip: float = 100.0  # the original clips D too (Keras clipnorm=100); 0 = none
    adam_eps: float = 1e-7
    lr_schedule: str = "constant"  # one of LR_SCHEDULES, applied to both lrs after the warm-up
    lr_warmup_steps: int = 0  # linear warm-up from 0 over this many steps (0 = none)
    lr_final_fraction: float = 0.1  # cosine/linear decay ends at this fraction of the initial lr

    # --- losses --------------------------------------------------------------------------------------
    flip_route: bool = True  # second shading route on randomly flipped texture + height + segmentation
    flip_no_identity: bool = (
        False  # True: every flipped sample is flipped at least one way (original: p=1/4 unflipped)
    )
    perceptual: str = "vgg"  # one of PERCEPTUAL_MODES
    perceptual_weight: float = 0.001  # the original's VGG weight (terrain RGB + height as 3 channels)
    vgg_weights: str = ""  # local VGG19 state dict (torchvision layout); "" = the cached standard download
    vgg_download: bool = True  # allow fetching the standard VGG19 weights into TORCH_HOME when not cached
    fm_weight: float = 0.0  # discriminator feature matching (L1 over D features of fake vs real)
    fm_fallback_weight: float = (
        1.0  # feature-matching weight used instead of VGG when VGG weights are missing
    )
    l1_weight: float = 0.0  # L1 between generated and real terrain RGB + height (the original: commented out)
    # Per class and zone (near a land-class border / inside) matching of the mean slope to the real map's
    # (training.losses.slope_stats_loss): against steps along painted borders and flat interiors.
    slope_stats_weight: float = 0.0
    # Per class matching of the shaded texture's detail (training.losses.detail_stats_loss).
    detail_stats_weight: float = 0.0
    # Mode seeking: minus the capped detail distance between two seeds of the same maps
    # (training.losses.diversity_loss), on the first diversity_samples maps of the batch (one more G pass).
    diversity_weight: float = 0.0
    diversity_cap: float = 0.05  # per-sample mean |detail difference| beyond which it pays nothing
    diversity_samples: int = 2
    diversity_land_only: bool = True  # water's detail is not paid for (it speckled the water otherwise)
    r1_gamma: float = 0.0  # R1 penalty on real data (gamma/2 * E|grad D(real)|^2); 0 = off
    r1_every: int = 16  # lazy R1: every this many steps, scaled up by the same factor

    # --- warm start ----------------------------------------------------------------------------------
    # A model file (.safetensors, e.g. terrain_core/models/default.safetensors) whose generator and shadow
    # weights initialise this run's G (and its EMA copy) wherever names and shapes match; the rest keeps
    # its fresh initialisation (say, a changed shortcut branch). D always starts fresh. Ignored on resume.
    init_from: str = ""

    # --- dynamic D:G ratio ---------------------------------------------------------------------------
    dynamic_ratio: bool = True  # False: G trains every step
    d_loss_upper: float = 2.0  # G off when the last (all-process mean) D loss is >= this
    d_loss_lower: float = 1.5  # G on again when it is < this

    # --- EMA -----------------------------------------------------------------------------------------
    ema_decay: float = 0.999  # per G update; 0 = no EMA (the raw G is exported)
    ema_warmup: bool = True  # decay ramps up as (1 + n) / (10 + n) over the first G updates

    # --- speed ---------------------------------------------------------------------------------------
    amp: str = "auto"  # one of AMP_MODES
    channels_last: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the generator and discriminator (CUDA)
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager" compiles without code generation)

    # --- robustness ----------------------------------------------------------------------------------
    max_bad_steps: int = 20  # stop after this many consecutive steps with NaN/inf losses or gradients

    # --- output --------------------------------------------------------------------------------------
    seed: int = 0
    log_every: int = 50  # steps between stats.jsonl lines and progress updates
    sample_every: int = 1000  # steps between sample grids (0 = only at the end)
    sample_count: int = 4  # maps in a sample grid
    save_every: int = 500  # steps between latest.pt writes (and at the end)
    keep_every: int = 5000  # steps between kept checkpoints ckpt_XXXXXXX.pt (0 = keep none)
    export: bool = True  # export the EMA generator at the end
    export_onnx: bool = True  # also write model.onnx
    tensorboard: bool = True  # log to RUN_DIR/tb when torch.utils.tensorboard is importable

    def __post_init__(self) -> None:
        if self.model not in PRESETS:
            raise ConfigError(f"model must be one of {', '.join(PRESETS)}, got {self.model!r}")
        for name, allowed in (
            ("amp", AMP_MODES),
            ("lr_schedule", LR_SCHEDULES),
            ("perceptual", PERCEPTUAL_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = (
            "crop",
            "batch_size",
            "epochs",
            "log_every",
            "save_every",
            "max_bad_steps",
            "r1_every",
            "diversity_samples",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        zero_ok = ("max_steps", "max_minutes", "sample_every", "keep_every", "lr_warmup_steps")
        zero_ok += ("sample_count",)
        for name in zero_ok:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.workers < -1:
            raise ConfigError(f"workers must be >= 0, or -1 for the CPU cores minus 2; got {self.workers}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.d_loss_lower > self.d_loss_upper:
            raise ConfigError(
                f"d_loss_lower ({self.d_loss_lower}) must not exceed d_loss_upper ({self.d_loss_upper})"
            )
        for name in ("g_lr", "d_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.crop % self.generator_config().downsample:
            raise ConfigError(
                f"crop ({self.crop}) must be a multiple of the generator's downsample "
                f"({self.generator_config().downsample})"
            )
        # Building the model configs validates the override tables with their own messages.
        self.discriminator_config()
        self.shadow_config()

    # --- the model configs this training run builds --------------------------------------------------
    def generator_config(self) -> GeneratorConfig:
        return _override(PRESETS[self.model], self.generator, "generator")

    def discriminator_config(self) -> DiscriminatorConfig:
        base = DISCRIMINATOR_PRESETS.get(self.model, DiscriminatorConfig())
        return _override(base, self.discriminator, "discriminator")

    def shadow_config(self) -> ShadowConfig:
        return _override(ShadowConfig(), self.shadow, "shadow")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    """Tuples -> lists, dicts recursively: what TOML, JSON and torch.load(weights_only) all read back."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _override(base: Any, changes: dict, table: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise ConfigError(f"unknown [{table}] keys {unknown}; known: {', '.join(names)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    try:
        return dataclasses.replace(base, **kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{table}] overrides {changes} are not valid: {e}") from None


_TABLES = ("generator", "discriminator", "shadow")


def _coerce(name: str, value: Any) -> Any:
    """Check one top-level value against the field's type (ints are accepted for floats)."""
    f = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {value}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{name} must be an integer, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table, got {value!r}")
    return value


def config_from_dict(d: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from a (TOML-shaped) dict, on top of ``base`` (tables merge key by key)."""
    base = base or TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown training config keys {unknown}; known: {', '.join(sorted(names))}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        v = _coerce(k, v)
        if k in _TABLES:
            v = {**getattr(base, k), **v}
        kw[k] = v
    return dataclasses.replace(base, **kw)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], value); the value is TOML when it parses, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set takes key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def load_config(
    preset_or_file: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Resolve a preset name (``training/presets/NAME.toml``) or a TOML path, then apply ``key=value``s."""
    data: dict[str, Any] = {}
    if preset_or_file:
        p = Path(preset_or_file)
        if p.suffix == ".toml" or p.exists():
            if not p.exists():
                raise ConfigError(f"config file {p} does not exist")
            data = read_config_file(p)
        else:
            cand = PRESET_DIR / f"{preset_or_file}.toml"
            if not cand.exists():
                raise ConfigError(
                    f"{preset_or_file!r} is neither a TOML file nor a preset; "
                    f"presets: {', '.join(preset_names())}"
                )
            data = read_config_file(cand)
    cfg = config_from_dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) == 1:
            cfg = config_from_dict({keys[0]: value}, cfg)
        elif len(keys) == 2 and keys[0] in _TABLES:
            cfg = config_from_dict({keys[0]: {keys[1]: value}}, cfg)
        else:
            raise ConfigError(f"--set key {'.'.join(keys)!r}: use a field name or {'|'.join(_TABLES)}.FIELD")
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def config_to_toml(cfg: TrainConfig) -> str:
    """The resolved config as TOML that ``load_config`` reads back to an equal TrainConfig."""
    d = cfg.to_dict()
    lines = ["# Resolved training config (written by training.train); usable as --config."]
    for k, v in d.items():
        if k not in _TABLES:
            lines.append(f"{k} = {_toml_value(v)}")
    for t in _TABLES:
        lines.append(f"\n[{t}]")
        for k, v in d[t].items():
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
