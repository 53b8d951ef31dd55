"""Evaluate an exported model: ``python -m training.evaluate --model EXPORT --data DIR [--out FILE.json]``.

Four groups of numbers, each with its references so that a value can be read without knowing the data:

- segmentation consistency: a small 7-class per-pixel conv classifier is trained on the real terrain
  images of the training split (as the original's data pipeline trained one to label its maps), then run
  on the generated shaded terrain; mIoU and pixel accuracy against the input map. Its score on the real
  images of the evaluated split is the ceiling.
- shadow leak: Pearson correlation between the lightness (CIE L) of the generated *flat* texture and a
  hill-shade of the generated height lit from the north-west (the data's light), and from the other three
  diagonals. The real shaded terrain vs its height is the upper reference (shading baked in); the
  procedural ground-truth albedo (``NAME_albedo.png``) vs its height the lower one (none baked in).
- height realism: per map, the slope of the radially averaged power spectrum of the height (log-log), and
  the per-pixel slope-angle distribution; generated vs real heights of the split as 1-D Wasserstein
  distances, overall and per class of the input map.
- diversity: per-pixel standard deviation across seeds for the same map (texture RGB 0..1, height -1..1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from terrain_core.exits import run_entry
from terrain_core.labels import CLASS_NAMES, NUM_CLASSES, labels_from_rgb
from terrain_core.output_set import check_output_file, write_text_atomic
from terrain_core.relief_metrics import (
    BorderStep,
    border_step,
    layout_detail_correlation,
    mean_slope_by_class,
)
from training.manifest import manifest_or_empty, split_names

DIRECTIONS = {"nw": 315.0, "ne": 45.0, "se": 135.0, "sw": 225.0}  # azimuth, clockwise from north (up)


class EvalError(ValueError):
    """Bad arguments or data; the message says what to do."""


# ------------------------------------------------------------------------------------------------ data


@dataclass
class MapSet:
    names: list[str]
    labels: np.ndarray  # [N, H, W] uint8
    terrain: np.ndarray  # [N, H, W, 3] float32 0..1 (shaded, as in the data)
    height: np.ndarray  # [N, H, W] float32 -1..1
    albedo: np.ndarray | None  # [N, H, W, 3] float32 0..1, procedural data only


def _read(path: Path) -> np.ndarray:
    from training.data.files import read_image

    return read_image(path, EvalError)


def names_with_class_maps(root: Path) -> list[str]:
    """Every NAME with a NAME_i2.png in ``root`` (its partners are checked when read)."""
    return sorted(p.name[: -len("_i2.png")] for p in root.glob("*_i2.png"))


def load_maps(root: Path, names: list[str], size: int) -> MapSet:
    """Centre crops of ``size`` (a multiple of 32) of the named maps."""
    labs, ters, hgts, albs = [], [], [], []
    have_albedo = all((root / f"{n}_albedo.png").is_file() for n in names)
    for n in names:
        lab = labels_from_rgb(_read(root / f"{n}_i2.png"))
        ter = _read(root / f"{n}_t.png")[..., :3].astype(np.float32) / 255.0
        h = _read(root / f"{n}_h.png")
        if h.ndim == 3:
            h = h[..., 0]
        hgt = (
            h.astype(np.float32) / 32767.5 - 1.0
            if h.dtype == np.uint16
            else h.astype(np.float32) / 127.5 - 1.0
        )
        H, W = lab.shape
        if min(H, W) < size or ter.shape[:2] != (H, W) or hgt.shape != (H, W):
            raise EvalError(
                f"map {n} is {H}x{W} (or its three files differ in size); need at least {size}x{size}"
            )
        y, x = (H - size) // 2, (W - size) // 2
        sl = (slice(y, y + size), slice(x, x + size))
        labs.append(lab[sl])
        ters.append(ter[sl])
        hgts.append(hgt[sl])
        if have_albedo:
            albs.append(_read(root / f"{n}_albedo.png")[..., :3][sl].astype(np.float32) / 255.0)
    return MapSet(
        list(names),
        np.stack(labs),
        np.stack(ters),
        np.stack(hgts),
        np.stack(albs) if have_albedo else None,
    )


def split_or_all(root: Path, split: str) -> tuple[list[str], str]:
    """Names of ``split`` from the manifest, or every map (and the split name actually used)."""
    names = split_names(root, split) if split else None
    if names:
        return sorted(names), split
    return names_with_class_maps(root), "all"


# ------------------------------------------------------------------------------------------------ colour


def lightness(rgb01: np.ndarray) -> np.ndarray:
    """CIE L* (0..100) of sRGB 0..1 [..., 3]."""
    return rgb_to_lab_np(rgb01)[..., 0]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


# ------------------------------------------------------------------------------------------------ classifier


_FEATURE_SCALES = (5, 15, 31)  # box sizes in pixels of the local statistics


def pixel_features(rgb01: np.ndarray) -> np.ndarray:
    """Per-pixel features [H, W, F] of an RGB image [H, W, 3] 0..1: Lab, local Lab means and L spread.

    Classes differ in colour and in texture (mountains are rough, water is flat), so local statistics
    at a few scales carry most of what a small conv net would learn, at a fraction of the cost.
    """
    from scipy.ndimage import uniform_filter

    lab = rgb_to_lab_np(rgb01)  # [H, W, 3]
    feats = [lab]
    L = lab[..., 0]
    for k in _FEATURE_SCALES:
        feats.append(np.stack([uniform_filter(lab[..., c], k, mode="reflect") for c in range(3)], -1))
        m = uniform_filter(L, k, mode="reflect")
        feats.append(np.sqrt(np.maximum(uniform_filter(L * L, k, mode="reflect") - m * m, 0.0))[..., None])
    return np.concatenate(feats, -1).astype(np.float32)


def rgb_to_lab_np(rgb01: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of sRGB 0..1 [..., 3]."""
    c = np.clip(rgb01.astype(np.float64), 0.0, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


@dataclass
class PixelClassifier:
    """A small MLP on ``pixel_features``, trained on real terrain images against their class maps."""

    net: Any
    mean: np.ndarray
    std: np.ndarray

    def predict(self, rgb01: np.ndarray) -> np.ndarray:
        """Class ids [N, H, W] uint8 of images [N, H, W, 3] 0..1."""
        import torch

        out = []
        with torch.no_grad():
            for im in rgb01:
                f = (pixel_features(im) - self.mean) / self.std  # [H, W, F]
                logits = self.net(torch.from_numpy(f.reshape(-1, f.shape[-1])))
                out.append(logits.argmax(1).numpy().reshape(im.shape[:2]).astype(np.uint8))
        return np.stack(out)


def train_classifier(
    terrain: np.ndarray, labels: np.ndarray, steps: int = 300, seed: int = 0
) -> PixelClassifier:
    """Fit on up to 20k pixels of real terrain [N, H, W, 3] 0..1 with class maps [N, H, W]."""
    import torch

    rng = np.random.default_rng(seed)
    per_map = max(1, 20000 // len(terrain))
    xs, ys = [], []
    for im, lab in zip(terrain, labels, strict=True):
        f = pixel_features(im)
        f = f.reshape(-1, f.shape[-1])  # [H*W, F]
        idx = rng.choice(f.shape[0], min(per_map, f.shape[0]), replace=False)
        xs.append(f[idx])
        ys.append(lab.reshape(-1)[idx])
    x = np.concatenate(xs)
    y = np.concatenate(ys).astype(np.int64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    counts = torch.bincount(yt, minlength=NUM_CLASSES).float()
    # Class weights against the imbalance (water and plains dominate most maps).
    weight = torch.where(
        counts > 0, counts.sum() / (counts.clamp(min=1) * NUM_CLASSES), torch.zeros_like(counts)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(xt.shape[1], 48), torch.nn.ReLU(), torch.nn.Linear(48, NUM_CLASSES)
        )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(xt), yt, weight=weight.clamp(max=20))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return PixelClassifier(net.eval(), mean.astype(np.float32), std.astype(np.float32))


def seg_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """mIoU over classes present in truth or prediction, pixel accuracy, per-class IoU."""
    cm = np.bincount(truth.ravel().astype(np.int64) * NUM_CLASSES + pred.ravel(), minlength=NUM_CLASSES**2)
    cm = cm.reshape(NUM_CLASSES, NUM_CLASSES)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = {CLASS_NAMES[c]: float(inter[c] / union[c]) for c in range(NUM_CLASSES) if union[c] > 0}
    return {
        "miou": float(np.mean(list(iou.values()))) if iou else 0.0,
        "pixel_accuracy": float(inter.sum() / max(cm.sum(), 1)),
        "per_class_iou": iou,
    }


# ------------------------------------------------------------------------------------------------ height


def spectral_slope(height: np.ndarray) -> float:
    """Slope of log power vs log frequency of the radially averaged spectrum (Hann-windowed)."""
    h = height.astype(np.float64)
    h = h - h.mean()
    n = min(h.shape)
    h = h[:n, :n]
    win = np.outer(np.hanning(n), np.hanning(n))
    p = np.abs(np.fft.fftshift(np.fft.fft2(h * win))) ** 2
    yy, xx = np.indices(p.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).astype(int)
    radial = np.bincount(r.ravel(), p.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    k = np.arange(2, n // 2)  # skip DC and the lowest ring; stop at Nyquist
    ok = radial[k] > 0
    if ok.sum() < 3:
        return 0.0
    return float(np.polyfit(np.log(k[ok]), np.log(radial[k][ok]), 1)[0])


def slope_degrees(height: np.ndarray, z_per_unit_per_px: float) -> np.ndarray:
    gy, gx = np.gradient(height.astype(np.float64) * z_per_unit_per_px)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def _w1(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import wasserstein_distance

    if a.size == 0 or b.size == 0:
        return None
    return float(wasserstein_distance(a.ravel(), b.ravel()))


def _subsample(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    x = x.ravel()
    return x if x.size <= k else rng.choice(x, k, replace=False)


# ------------------------------------------------------------------------------------------------ main


def n_maps(names: list[str]) -> str:
    return f"{len(names)} map{'s' if len(names) != 1 else ''}"


def _stderr(*a: Any) -> None:
    print(*a, file=sys.stderr)


def resolve_model(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for cand in ("model.onnx", "model.safetensors"):
            if (p / cand).is_file():
                return p / cand
        raise EvalError(f"{p} holds no model.onnx or model.safetensors")
    if not p.is_file():
        raise EvalError(f"model {p} does not exist")
    return p


@dataclass(frozen=True)
class EvalOptions:
    """What ``evaluate`` measures and on what (the command line's options, typed)."""

    split: str = "val"  # the split to evaluate ("" or a split the data lacks: every map)
    size: int = 256  # centre crop side in pixels, a multiple of 32
    seeds: int = 3  # seeds per map for the diversity figures (seed 0 alone for the others), >= 1
    max_maps: int = 32  # most maps evaluated
    classifier_steps: int = 300  # training steps of the segmentation-consistency classifier
    cell_size_m: float | None = None  # pixel size in metres for slope angles (None: the manifest's, else
    # an exaggeration that puts the real median slope at 30 degrees)
    flow: bool = False  # also the flow realism figures (erosion per map: about a second per 256^2 map)

    def __post_init__(self) -> None:
        if self.size % 32 or self.size < 32:
            raise EvalError(f"--size must be a positive multiple of 32, got {self.size}")
        if self.seeds < 1:
            raise EvalError("--seeds must be >= 1")


@dataclass
class Generated:
    """The model's outputs for the evaluated maps: [seeds, N, H, W, 3] textures (flat and shaded) 0..1
    and [seeds, N, H, W] heights -1..1; seed s in row s."""

    texture: np.ndarray
    shaded: np.ndarray
    height: np.ndarray
    seconds: float


def evaluate(
    model: str | Path, data: str | Path, opts: EvalOptions | None = None, log=_stderr
) -> dict[str, Any]:
    """The four groups of numbers of the module docstring (plus relief and, with ``opts.flow``, flow
    figures) for ``model`` on the maps of ``data``."""
    from terrain_core.runtime import TerrainGenerator

    opts = opts or EvalOptions()
    t0 = time.time()
    root = Path(data)
    if not root.is_dir():
        raise EvalError(f"--data {root} is not a folder")
    ev, tr, used_split, used_train = load_eval_and_train_maps(root, opts)
    gen = TerrainGenerator.load(resolve_model(model))
    info = gen.info
    log(f"evaluating {info.get('name', model)} ({gen.runtime}) on {n_maps(ev.names)} of split {used_split!r}")
    out = generate_maps(gen, ev.labels, opts.seeds)
    seg = segmentation_consistency(tr, used_train, ev, out.shaded[0], opts.classifier_steps)
    leak = shadow_leak(out, ev)
    lo, hi = info.get("height_range_m", [0.0, 1.0])
    zk, slope_units = slope_exaggeration(root, ev.height, (lo, hi), opts.cell_size_m)
    height = height_realism(out.height[0], ev, zk, slope_units)
    relief = relief_figures(out.height[0], ev.height, ev.labels, zk)
    diversity = diversity_figures(out, ev.height)
    out_flow = None
    if opts.flow:
        out_flow, eroded = flow_realism(
            ev.labels, ev.height, out.height[0], (lo, hi), float(opts.cell_size_m or 30.0)
        )
        out_flow["relief_eroded"] = relief_figures(eroded, ev.height, ev.labels, zk)
    return {
        "model": str(model),
        "model_name": info.get("name"),
        "runtime": gen.runtime,
        "data": str(root),
        "split": used_split,
        "maps": len(ev.names),
        "size": opts.size,
        "segmentation": seg,
        "shadow_leak": leak,
        "height": height,
        "relief": relief,
        "diversity": diversity,
        **({"flow": out_flow} if out_flow is not None else {}),
        "seconds": {"generate": round(out.seconds, 2), "total": round(time.time() - t0, 2)},
    }


def load_eval_and_train_maps(root: Path, opts: EvalOptions) -> tuple[MapSet, MapSet, str, str]:
    """The evaluated maps (up to ``max_maps``), the classifier's training maps, and the splits they came
    from ("all" where the data has no such split)."""
    eval_names, used_split = split_or_all(root, opts.split)
    train_names, used_train = split_or_all(root, "train")
    if not eval_names:
        raise EvalError(f"{root} holds no maps (NAME_i2.png + NAME_t.png + NAME_h.png)")
    ev = load_maps(root, eval_names[: opts.max_maps], opts.size)
    tr = load_maps(root, train_names[: max(opts.max_maps, 8) * 4], opts.size)
    return ev, tr, used_split, used_train


def generate_maps(gen, labels: np.ndarray, seeds: int) -> Generated:
    """Every map with seeds 0..seeds-1 (seed 0 for the main numbers, all for diversity)."""
    n, size = labels.shape[0], labels.shape[1]
    tex = np.zeros((seeds, n, size, size, 3), np.float32)
    sha = np.zeros_like(tex)
    hgt = np.zeros((seeds, n, size, size), np.float32)
    t = time.time()
    for s in range(seeds):
        for i in range(n):
            r = gen.generate(labels[i], seed=s)
            tex[s, i], sha[s, i], hgt[s, i] = r.texture, r.shaded, r.height
    return Generated(tex, sha, hgt, time.time() - t)


def segmentation_consistency(
    tr: MapSet, used_train: str, ev: MapSet, shaded: np.ndarray, steps: int
) -> dict[str, Any]:
    """A pixel classifier trained on the real training maps, scored on the generated shaded terrain
    and, as the ceiling, on the real terrain of the evaluated maps."""
    clf = train_classifier(tr.terrain, tr.labels, steps)
    return {
        "generated": seg_scores(clf.predict(shaded), ev.labels),
        "real_ceiling": seg_scores(clf.predict(ev.terrain), ev.labels),
        "classifier_train_maps": len(tr.names),
        "classifier_train_split": used_train,
    }


def shadow_leak(out: Generated, ev: MapSet) -> dict[str, Any]:
    """Correlations (averaged over maps) of lightness with the height's hill-shade: the flat texture
    from the four diagonals, the generated and real shaded terrain and the albedo from the north-west."""
    from training.samples import auto_hillshade

    def mean_corr(images: np.ndarray, heights: np.ndarray, az: float) -> float:
        corrs = [pearson(lightness(im), auto_hillshade(h, az)) for im, h in zip(images, heights, strict=True)]
        return float(np.mean(corrs))

    tex, sha, hgt = out.texture[0], out.shaded[0], out.height[0]
    leak: dict[str, Any] = {f"texture_{d}": mean_corr(tex, hgt, az) for d, az in DIRECTIONS.items()}
    leak["generated_shaded_nw"] = mean_corr(sha, hgt, DIRECTIONS["nw"])
    leak["real_shaded_nw"] = mean_corr(ev.terrain, ev.height, DIRECTIONS["nw"])  # upper reference
    leak["albedo_nw"] = mean_corr(ev.albedo, ev.height, DIRECTIONS["nw"]) if ev.albedo is not None else None
    return leak


def slope_exaggeration(
    root: Path, real_height: np.ndarray, height_range_m: tuple[float, float], cell_size_m: float | None
) -> tuple[float, str]:
    """The factor from height -1..1 per pixel to slope, and its units.

    With a cell size (given, or the manifest's) slopes are physical degrees. Without one, they are in
    normalised height units per pixel scaled so that the real data's median slope is 30 degrees:
    comparable between generated and real, not physical."""
    lo, hi = height_range_m
    cell = float(cell_size_m or manifest_or_empty(root).get("cell_size_m") or 0) or None
    if cell:
        zk = (float(hi) - float(lo)) / 2.0 / cell
        return zk, f"degrees (height range {lo}..{hi} m, cell {cell} m)"
    g = np.median(np.concatenate([np.hypot(*np.gradient(h.astype(np.float64))).ravel() for h in real_height]))
    zk = float(np.tan(np.radians(30.0)) / max(g, 1e-9))
    return zk, "degrees at an exaggeration that puts the real median slope at 30 (no cell size known)"


def height_realism(gen_h: np.ndarray, ev: MapSet, zk: float, slope_units: str) -> dict[str, Any]:
    """Spectral slopes, slope angles and height values, generated [N, H, W] vs real, overall and per
    class of the input map (1-D Wasserstein distances on seeded subsamples)."""
    rng = np.random.default_rng(0)
    spec_g = np.array([spectral_slope(h) for h in gen_h])
    spec_r = np.array([spectral_slope(h) for h in ev.height])
    p10, p90 = np.percentile(spec_r, [10, 90])
    sl_g = np.stack([slope_degrees(h, zk) for h in gen_h])
    sl_r = np.stack([slope_degrees(h, zk) for h in ev.height])
    per_class: dict[str, Any] = {}
    for c, name in enumerate(CLASS_NAMES):
        m = ev.labels == c
        if m.sum() < 50:
            continue
        per_class[name] = {
            "pixels": int(m.sum()),
            "slope_w1_deg": _w1(_subsample(sl_g[m], 20000, rng), _subsample(sl_r[m], 20000, rng)),
            "height_w1": _w1(_subsample(gen_h[m], 20000, rng), _subsample(ev.height[m], 20000, rng)),
            "slope_mean_deg": {"generated": float(sl_g[m].mean()), "real": float(sl_r[m].mean())},
        }
    return {
        "spectral_slope": {
            "generated_mean": float(spec_g.mean()),
            "real_mean": float(spec_r.mean()),
            "real_std": float(spec_r.std()),
            # the spread of the real crops, and the share of generated maps inside it
            "real_p10": float(p10),
            "real_p90": float(p90),
            "generated_in_real_p10_p90": float(np.mean((spec_g >= p10) & (spec_g <= p90))),
            "wasserstein": _w1(spec_g, spec_r),
        },
        "slope_angle": {
            "units": slope_units,
            "generated_mean": float(sl_g.mean()),
            "real_mean": float(sl_r.mean()),
            "wasserstein": _w1(_subsample(sl_g, 50000, rng), _subsample(sl_r, 50000, rng)),
        },
        "height_value_wasserstein": _w1(_subsample(gen_h, 50000, rng), _subsample(ev.height, 50000, rng)),
        "per_class": per_class,
    }


def diversity_figures(out: Generated, real_height: np.ndarray) -> dict[str, Any]:
    """Per-pixel spread across seeds (and, for scale, across the real maps); layout and detail
    correlations between seeds."""
    tex, sha, hgt = out.texture, out.shaded, out.height
    seeds, n = hgt.shape[:2]
    diversity = {
        "seeds": seeds,
        "texture_std": float(tex.std(0).mean()) if seeds > 1 else 0.0,
        "shaded_std": float(sha.std(0).mean()) if seeds > 1 else 0.0,
        "height_std": float(hgt.std(0).mean()) if seeds > 1 else 0.0,
        "real_height_std_across_maps": float(real_height.std(0).mean()) if n > 1 else 0.0,
    }
    if seeds > 1:
        corrs = np.array([layout_detail_correlation(list(hgt[:, i])) for i in range(n)])
        diversity["layout_correlation"] = float(corrs[:, 0].mean())
        diversity["detail_correlation"] = float(corrs[:, 1].mean())
    return diversity


def relief_figures(gen_h: np.ndarray, real_h: np.ndarray, labels: np.ndarray, zk: float) -> dict[str, Any]:
    """Border-step index and mean slope per class, generated beside real, on the same maps
    (heights [n, H, W] in -1..1, labels [n, H, W]); slopes in the evaluation's exaggeration ``zk``."""
    steps = {"generated": BorderStep(), "real": BorderStep()}
    k = len(CLASS_NAMES)
    sums = {"generated": np.zeros(k), "real": np.zeros(k)}
    counts = np.zeros(k)
    for g, r, lab in zip(gen_h, real_h, labels, strict=True):
        for key, h in (("generated", g), ("real", r)):
            steps[key] = steps[key] + border_step(h, lab)
            s, c = mean_slope_by_class(h * zk, lab, k)
            sums[key] += s
        counts += c
    land = np.arange(k) != 0
    per_class = {}
    for c, name in enumerate(CLASS_NAMES):
        if counts[c] < 50:
            continue
        gm, rm = sums["generated"][c] / counts[c], sums["real"][c] / counts[c]
        per_class[name] = {"generated": float(gm), "real": float(rm), "ratio": float(gm / rm) if rm else None}
    g_land = sums["generated"][land].sum() / max(counts[land].sum(), 1)
    r_land = sums["real"][land].sum() / max(counts[land].sum(), 1)
    return {
        "border_step_index": {
            "generated": steps["generated"].index,
            "real": steps["real"].index,
            "definition": "mean |grad h| (h / its land std) within 3 px of a land-class border over the "
            "mean >= 8 px from one, land only",
        },
        "mean_slope": {
            "units": "|grad h| in the slope-angle section's exaggeration",
            "land_generated": float(g_land),
            "land_real": float(r_land),
            "land_ratio": float(g_land / r_land) if r_land else None,
            "per_class": per_class,
        },
    }


def flow_realism(
    labels: np.ndarray,
    real: np.ndarray,
    generated: np.ndarray,
    height_range_m: tuple[float, float],
    cell_size_m: float,
    level: str = "medium",
) -> tuple[dict[str, Any], np.ndarray]:
    """Closed-depression share and drainage tau (terrain_core.flow_metrics) of the real heights, the
    generated ones and the generated ones eroded at ``level``: per set the mean and p10..p90 over maps,
    and the share of maps inside the real p10..p90. Heights [N, H, W] in -1..1; labels [N, H, W].
    Also returns the eroded heights [N, H, W] in -1..1 (for the relief figures)."""
    from terrain_core.erosion import erode
    from terrain_core.flow_metrics import flow_metrics

    lo, hi = float(height_range_m[0]), float(height_range_m[1])
    sets: dict[str, list[dict[str, Any]]] = {"real": [], "generated": [], f"generated_{level}": []}
    eroded = np.zeros_like(generated)
    for i, (lab, hr, hg) in enumerate(zip(labels, real, generated, strict=True)):
        zr, zg = (lo + (h.astype(np.float64) + 1.0) * 0.5 * (hi - lo) for h in (hr, hg))
        sets["real"].append(flow_metrics(zr, lab, cell_size_m=cell_size_m))
        sets["generated"].append(flow_metrics(zg, lab, cell_size_m=cell_size_m))
        e = erode(zg, lab, strength=level, cell_size_m=cell_size_m, seed=0)
        sets[f"generated_{level}"].append(flow_metrics(e.height_m, lab, cell_size_m=cell_size_m))
        eroded[i] = 2.0 * (e.height_m - lo) / (hi - lo) - 1.0
    out: dict[str, Any] = {"cell_size_m": cell_size_m, "erosion_level": level}
    for metric in ("closed_depression_share", "drainage_tau"):
        vals = {k: np.array([m[metric] for m in v if m[metric] is not None], float) for k, v in sets.items()}
        r10, r90 = np.percentile(vals["real"], [10, 90]) if len(vals["real"]) else (np.nan, np.nan)
        out[metric] = {
            k: {
                "mean": float(v.mean()) if len(v) else None,
                "p10": float(np.percentile(v, 10)) if len(v) else None,
                "p90": float(np.percentile(v, 90)) if len(v) else None,
                "in_real_p10_p90": float(np.mean((v >= r10) & (v <= r90))) if len(v) else None,
            }
            for k, v in vals.items()
        }
    return out, eroded


def _summary(r: dict[str, Any]) -> str:
    s, lk, h, d = r["segmentation"], r["shadow_leak"], r["height"], r["diversity"]
    gen, ceil = s["generated"], s["real_ceiling"]
    alb = "n/a" if lk["albedo_nw"] is None else f"{lk['albedo_nw']:.3f}"
    sp, sa = h["spectral_slope"], h["slope_angle"]
    bs, ms = r["relief"]["border_step_index"], r["relief"]["mean_slope"]
    return "\n".join(
        [
            f"segmentation: mIoU {gen['miou']:.3f} acc {gen['pixel_accuracy']:.3f} "
            f"(ceiling on real: {ceil['miou']:.3f} / {ceil['pixel_accuracy']:.3f})",
            f"shadow leak (texture vs NW hill-shade): {lk['texture_nw']:.3f}  "
            f"[real shaded {lk['real_shaded_nw']:.3f}, albedo {alb}; other directions "
            f"ne {lk['texture_ne']:.3f} se {lk['texture_se']:.3f} sw {lk['texture_sw']:.3f}]",
            f"height: spectral slope gen {sp['generated_mean']:.2f} real {sp['real_mean']:.2f} "
            f"(real p10..p90 {sp['real_p10']:.2f}..{sp['real_p90']:.2f}, W1 {sp['wasserstein']:.3f}); "
            f"slope angle W1 {sa['wasserstein']:.2f} deg",
            f"relief: border-step index gen {bs['generated']:.2f} real {bs['real']:.2f}; mean slope on land "
            f"{ms['land_ratio']:.2f}x real ("
            + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in ms["per_class"].items() if v["ratio"] is not None)
            + ")",
            f"diversity over {d['seeds']} seeds: texture std {d['texture_std']:.4f}, "
            f"height std {d['height_std']:.4f}"
            + (f", detail correlation {d['detail_correlation']:.3f}" if "detail_correlation" in d else ""),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model.onnx / model.safetensors, or an export folder")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.add_argument("--split", default="val", help="split to evaluate (all maps when the data has none)")
    p.add_argument("--size", type=int, default=256, help="centre crop side (multiple of 32)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per map for diversity")
    p.add_argument("--max-maps", type=int, default=32)
    p.add_argument("--classifier-steps", type=int, default=300)
    p.add_argument("--cell-size-m", type=float, default=None, help="pixel size in metres (for slope angles)")
    p.add_argument(
        "--flow", action="store_true",
        help="also closed-depression share and drainage tau: real, generated, generated + medium erosion",
    )  # fmt: skip
    args = p.parse_args(argv)

    def body() -> int:
        if args.out:  # before the evaluation: a bad --out would otherwise fail only at the end
            check_output_file(args.out, "--out")
        opts = EvalOptions(**{f.name: getattr(args, f.name) for f in fields(EvalOptions)})
        res = evaluate(args.model, args.data, opts)
        text = json.dumps(res, indent=2)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, text + "\n")
        print(_summary(res), file=sys.stderr)
        print(text)
        return 0

    from terrain_core.runtime import ModelFileError

    return run_entry(body, expected=(EvalError, ModelFileError))


if __name__ == "__main__":
    sys.exit(main())
