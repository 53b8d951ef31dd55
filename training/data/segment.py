"""The original's segmentation pipeline, rebuilt: per-pixel features (colour, height, neighbourhood), a
non-linear reduction (random Fourier features of an RBF kernel, then PCA), k-means into 7 clusters, a
cluster -> class assignment (Hungarian matching of cluster descriptors to class prototypes, overridable by
a user JSON file), a small per-pixel classifier trained on those labels, and post-processing into large,
smooth blobs with randomised parameters per crop.

Pure numpy/scipy: the builder runs without torch or scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment

from terrain_core.labels import CLASS_NAMES, NUM_CLASSES
from training.data.files import read_json

SCALES = (2.0, 6.0, 16.0)  # neighbourhood sizes (gaussian sigma, pixels)


class SegmentationError(ValueError):
    """Bad segmentation input (e.g. an override file that names unknown classes)."""


# ---------------------------------------------------------------------------------------------- features
def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the first two axes; wide blurs run on a block-averaged copy and are interpolated
    back (a 4x cheaper filter per halving, and visually the same at these widths)."""
    f = int(sigma // 2)
    if f < 2:
        return ndi.gaussian_filter(x, (sigma, sigma) + (0,) * (x.ndim - 2), mode="reflect")
    H, W = x.shape[:2]
    ph, pw = (-H) % f, (-W) % f
    xp = np.pad(x, ((0, ph), (0, pw)) + ((0, 0),) * (x.ndim - 2), mode="reflect")
    h, w = xp.shape[0] // f, xp.shape[1] // f
    small = xp.reshape(h, f, w, f, *x.shape[2:]).mean((1, 3))
    s2 = math.sqrt(max(sigma * sigma - f * f / 4.0, 0.25)) / f
    small = ndi.gaussian_filter(small, (s2, s2) + (0,) * (x.ndim - 2), mode="reflect")
    # Back to full size: pixel centres of the fine grid in coarse-grid coordinates, bilinear.
    yy = np.clip((np.arange(H) + 0.5) / f - 0.5, 0, h - 1)
    xx = np.clip((np.arange(W) + 0.5) / f - 0.5, 0, w - 1)
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ty = (yy - y0).reshape(-1, 1, *([1] * (x.ndim - 2))).astype(np.float32)
    tx = (xx - x0).reshape(1, -1, *([1] * (x.ndim - 2))).astype(np.float32)
    top = small[y0][:, x0] * (1 - tx) + small[y0][:, x1] * tx
    bot = small[y1][:, x0] * (1 - tx) + small[y1][:, x1] * tx
    return (top * (1 - ty) + bot * ty).astype(x.dtype)


def pixel_features(terrain: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Per-pixel features [H, W, F] float32 from the terrain colour [H, W, 3] uint8 and height [H, W] m.

    Colour is smoothed a little first (the baked hill-shading is texture, not land type), heights are
    compressed (asinh: 10 m matters in lowlands, 100 m does not on peaks) with the sea floor clamped (depth
    is not a land type), and each is described by local means at several scales; roughness is the local
    standard deviation of height; slope is the gradient magnitude.
    """
    rgb = terrain[..., :3].astype(np.float32) / 255.0
    h = np.asarray(height_m, np.float32)
    hc = np.arcsinh(np.maximum(h, 0.0) / 200.0)  # ~0 at sea level, ~4 at 5000 m
    below = (h <= 0).astype(np.float32)
    # Neighbourhood statistics are taken over the pixel's own side of the coastline (normalised
    # convolution): otherwise a coastal strip, half sea and half land, becomes a land type of its own.
    sides = (below, 1.0 - below)
    feats = []
    for s in SCALES:
        c = np.zeros_like(rgb)
        m = np.zeros_like(hc)
        sq = np.zeros_like(hc)
        for side in sides:
            # One blur of [r, g, b, h, h^2, weight] for this side of the coast.
            stack = np.concatenate(
                [rgb, hc[..., None], (hc * hc)[..., None], np.ones_like(hc)[..., None]], -1
            )
            b = smooth(stack * side[..., None], s)
            wgt = b[..., 5] + 1e-4
            sel = side[..., None] > 0
            c = np.where(sel, b[..., :3] / wgt[..., None], c)
            ms, qs = b[..., 3] / wgt, b[..., 4] / wgt
            m = np.where(side > 0, ms, m)
            sq = np.where(side > 0, qs, sq)
        feats += [c[..., 0], c[..., 1], c[..., 2]]
        feats += [m, np.sqrt(np.maximum(sq - m * m, 0.0)) * 4.0]
    feats.append(below)
    gy, gx = np.gradient(ndi.gaussian_filter(hc, 1.0))
    feats.append(np.hypot(gx, gy) * 8.0)
    # Opponent colours of the finest scale: green-ness and blue-ness separate forest/water from the rest.
    c = ndi.gaussian_filter(rgb, (SCALES[0], SCALES[0], 0))
    feats.append(c[..., 1] - 0.5 * (c[..., 0] + c[..., 2]))
    feats.append(c[..., 2] - 0.5 * (c[..., 0] + c[..., 1]))
    return np.stack(feats, -1).astype(np.float32)


FEATURE_NAMES = tuple(
    [f"{n}@{s:g}" for s in SCALES for n in ("r", "g", "b", "height", "roughness")]
    + ["below_sea", "slope", "greenness", "blueness"]
)


def descriptors(terrain: np.ndarray, height_m: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel quantities that the cluster -> class matching compares (flattened later)."""
    f = pixel_features(terrain, height_m)
    i = {n: k for k, n in enumerate(FEATURE_NAMES)}
    r, g, b = f[..., i["r@2"]], f[..., i["g@2"]], f[..., i["b@2"]]
    return {
        "height": f[..., i["height@6"]],
        "roughness": f[..., i["roughness@6"]],
        "below_sea": f[..., i["below_sea"]],
        "blueness": b - 0.5 * (r + g),
        "greenness": g - 0.5 * (r + b),
        "brightness": (r + g + b) / 3.0,
        "redness": r - b,
    }


# ------------------------------------------------------------------------------------ reduce + cluster
@dataclass
class Reducer:
    """Standardise -> random Fourier features (RBF kernel) -> PCA: a cheap kernel-PCA."""

    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    omega: np.ndarray  # [F, D]
    phase: np.ndarray  # [D]
    pca_mean: np.ndarray  # [D]
    pca: np.ndarray  # [D, K]

    @classmethod
    def fit(cls, x: np.ndarray, rng: np.random.Generator, n_fourier=256, n_components=8, gamma=0.5):
        mean, std = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / std
        omega = rng.normal(0, math.sqrt(2 * gamma / x.shape[1]), (x.shape[1], n_fourier)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, n_fourier).astype(np.float32)
        phi = np.cos(z @ omega + phase) * math.sqrt(2.0 / n_fourier)
        pm = phi.mean(0)
        # PCA from the D x D covariance (eigh) rather than an SVD of the N x D samples: same axes, cheaper.
        c = phi - pm
        evals, evecs = np.linalg.eigh((c.T @ c) / len(c))
        top = evecs[:, np.argsort(evals)[::-1][:n_components]]
        return cls(mean, std, omega, phase, pm, top.astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        phi = np.cos(z @ self.omega + self.phase) * math.sqrt(2.0 / self.omega.shape[1])
        return (phi - self.pca_mean) @ self.pca


def cluster(y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means (k-means++ init, several restarts, best inertia); returns (centroids [k, D], labels [N])."""
    best = None
    for r in range(4):
        c, lab = kmeans2(y, k, iter=30, minit="++", seed=seed * 7 + r)
        inertia = float(((y - c[lab]) ** 2).sum())
        if np.bincount(lab, minlength=k).min() > 0 and (best is None or inertia < best[0]):
            best = (inertia, c, lab)
    if best is None:
        raise SegmentationError(f"k-means could not find {k} non-empty clusters; sample more varied crops")
    return best[1], best[2]


# --------------------------------------------------------------------------------- cluster -> class
# Class prototypes in units of "standard deviations across the clusters" of each descriptor.
PROTOTYPES: dict[str, dict[str, float]] = {
    "water": {"below_sea": 2.5, "blueness": 2.0, "height": -1.2, "roughness": -1.0},
    "plains": {"height": -0.6, "roughness": -0.8, "greenness": 0.3, "brightness": 0.6, "redness": 0.2},
    "forest": {"height": -0.4, "roughness": -0.2, "greenness": 1.8, "brightness": -0.4, "redness": -0.5},
    "hills": {"height": 0.3, "roughness": 0.7, "greenness": -0.5, "brightness": -0.4, "redness": 1.0},
    "desert": {"height": -0.1, "roughness": -0.6, "greenness": -0.6, "brightness": 1.0, "redness": 1.2},
    "mountains": {"height": 1.5, "roughness": 1.8, "greenness": -0.5, "redness": -0.3},
    "highland": {"height": 1.0, "roughness": 0.2, "greenness": -0.3, "brightness": 0.5, "redness": -0.2},
}
DESCRIPTOR_NAMES = ("height", "roughness", "below_sea", "blueness", "greenness", "brightness", "redness")


def assign_clusters(cluster_desc: np.ndarray, classes: list[int] | None = None) -> list[int]:
    """Class id per cluster by Hungarian matching of cluster descriptors [k, len(DESCRIPTOR_NAMES)] (means
    over each cluster's pixels) to the PROTOTYPES of ``classes`` (default: all 7), after standardising each
    descriptor across the clusters. With as many clusters as classes, every class gets one cluster."""
    classes = list(range(NUM_CLASSES)) if classes is None else list(classes)
    d = np.asarray(cluster_desc, np.float64)
    if d.ndim != 2 or d.shape[1] != len(DESCRIPTOR_NAMES) or d.shape[0] > len(classes):
        raise SegmentationError(
            f"need descriptors [k <= {len(classes)}, {len(DESCRIPTOR_NAMES)}], got {d.shape}"
        )
    z = (d - d.mean(0)) / (d.std(0) + 1e-9)
    names = [CLASS_NAMES[c] for c in classes]
    proto = np.array([[PROTOTYPES[c].get(n, 0.0) for n in DESCRIPTOR_NAMES] for c in names])
    # Descriptors a prototype does not mention cost nothing: the mask keeps them neutral.
    mask = np.array([[n in PROTOTYPES[c] for n in DESCRIPTOR_NAMES] for c in names], np.float64)
    cost = (((z[:, None, :] - proto[None]) ** 2) * mask[None]).sum(-1)  # [cluster, class]
    rows, cols = linear_sum_assignment(cost)
    out = [0] * len(d)
    for r, c in zip(rows, cols, strict=True):
        out[int(r)] = classes[int(c)]
    return out


def read_override(path: str | Path, n_clusters: int = NUM_CLASSES - 1) -> dict[int, int]:
    """User file {"0": "water", "3": "forest", ...}: cluster number -> class name (several may share)."""
    p = Path(path)
    data = read_json(
        p, SegmentationError, kind="cluster override file", hint='; expected {"0": "water", ...}'
    )
    if not isinstance(data, dict):
        raise SegmentationError(f"{p} must hold a JSON object cluster -> class name")
    out = {}
    for k, v in data.items():
        try:
            ci = int(k)
        except ValueError:
            raise SegmentationError(f"{p}: cluster key {k!r} is not a number 0..{n_clusters - 1}") from None
        if not 0 <= ci < n_clusters:
            raise SegmentationError(f"{p}: cluster {ci} out of range 0..{n_clusters - 1}")
        if v not in CLASS_NAMES:
            raise SegmentationError(
                f"{p}: unknown class {v!r} for cluster {ci}; known: {', '.join(CLASS_NAMES)}"
            )
        out[ci] = CLASS_NAMES.index(v)
    return out


# --------------------------------------------------------------------------------------- classifier
@dataclass
class PixelClassifier:
    """Standardise -> 1 hidden layer (ReLU) -> softmax over the 7 classes; trained with Adam in numpy."""

    mean: np.ndarray
    std: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @classmethod
    def fit(cls, x, y, rng: np.random.Generator, hidden=48, steps=300, lr=0.01, batch=1024):
        mean, std = x.mean(0), x.std(0) + 1e-6
        z = ((x - mean) / std).astype(np.float32)
        f = x.shape[1]
        params = [
            rng.normal(0, math.sqrt(2 / f), (f, hidden)).astype(np.float32),
            np.zeros(hidden, np.float32),
            rng.normal(0, math.sqrt(1 / hidden), (hidden, NUM_CLASSES)).astype(np.float32),
            np.zeros(NUM_CLASSES, np.float32),
        ]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        # Class-balanced weights: rare classes (mountains) must not vanish under common ones (water).
        counts = np.bincount(y, minlength=NUM_CLASSES).astype(np.float32)
        cw = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0) ** 0.5
        for t in range(1, steps + 1):
            idx = rng.integers(0, len(z), min(batch, len(z)))
            xb, yb = z[idx], y[idx]
            h = np.maximum(xb @ params[0] + params[1], 0)
            logits = h @ params[2] + params[3]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            wb = cw[yb][:, None]
            g = p.copy()
            g[np.arange(len(yb)), yb] -= 1
            g *= wb / len(yb)
            grads = [None, None, h.T @ g, g.sum(0)]
            gh = (g @ params[2].T) * (h > 0)
            grads[0], grads[1] = xb.T @ gh, gh.sum(0)
            for i, gr in enumerate(grads):
                m[i] = 0.9 * m[i] + 0.1 * gr
                v[i] = 0.999 * v[i] + 0.001 * gr * gr
                params[i] -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
        return cls(mean.astype(np.float32), std.astype(np.float32), *params)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [..., 7] for features [..., F]."""
        shp = x.shape[:-1]
        z = (x.reshape(-1, x.shape[-1]) - self.mean) / self.std
        logits = np.maximum(z @ self.w1 + self.b1, 0) @ self.w2 + self.b2
        p = np.exp(logits - logits.max(1, keepdims=True))
        return (p / p.sum(1, keepdims=True)).reshape(*shp, NUM_CLASSES).astype(np.float32)

    def to_json(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------- post-processing
@dataclass(frozen=True)
class BlobParams:
    sigma: float  # gaussian smoothing of the class probabilities (pixels)
    mode_size: int  # window of the majority filter (pixels, odd)
    mode_passes: int
    min_area: int  # connected regions smaller than this (pixels) are absorbed by their neighbours

    @classmethod
    def random(cls, rng: np.random.Generator, size: int) -> BlobParams:
        """Randomised per crop (scaled by the crop size) so that overlapping crops are not identical."""
        k = size / 256.0
        # Floors keep small crops (tests, previews) as blobby as large ones.
        return cls(
            sigma=float(max(rng.uniform(2.5, 6.0) * k, 2.0)),
            mode_size=int(max(2 * round(rng.uniform(3, 7) * k) + 1, 5)),
            mode_passes=int(rng.integers(1, 3)),
            min_area=int(rng.uniform(0.002, 0.008) * size * size),
        )


def majority_filter(labels: np.ndarray, size: int) -> np.ndarray:
    """Most frequent class in a size x size window (one box filter per class: fast)."""
    votes = np.stack([ndi.uniform_filter((labels == c).astype(np.float32), size, mode="reflect")
                      for c in range(NUM_CLASSES)])  # fmt: skip
    return votes.argmax(0).astype(labels.dtype)


def remove_small_regions(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Regions (8-connected, per class) smaller than ``min_area`` take the class of the nearest big region."""
    out = labels.copy()
    small = np.zeros(labels.shape, bool)
    for c in range(NUM_CLASSES):
        comp, n = ndi.label(labels == c, structure=np.ones((3, 3)))
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        bad = np.flatnonzero(sizes < min_area)
        bad = bad[bad > 0]
        if bad.size:
            small |= np.isin(comp, bad)
    if small.all() or not small.any():
        return out
    _, (iy, ix) = ndi.distance_transform_edt(small, return_indices=True)
    out[small] = labels[iy[small], ix[small]]
    return out


def postprocess(proba: np.ndarray, params: BlobParams) -> np.ndarray:
    """Class probabilities [H, W, 7] -> smooth blob labels [H, W] uint8."""
    sm = smooth(proba, params.sigma)
    lab = sm.argmax(-1).astype(np.uint8)
    for _ in range(params.mode_passes):
        lab = majority_filter(lab, params.mode_size)
    return remove_small_regions(lab, params.min_area)


def boundary_density(labels: np.ndarray) -> float:
    """Class changes between 4-neighbours per pixel: the boundary length per area (lower = smoother)."""
    lab = np.asarray(labels)
    changes = (lab[1:] != lab[:-1]).sum() + (lab[:, 1:] != lab[:, :-1]).sum()
    return float(changes) / lab.size


# ------------------------------------------------------------------------------------------ the model
WATER = CLASS_NAMES.index("water")
LAND_CLASSES = [c for c in range(NUM_CLASSES) if c != WATER]


def apply_water_rule(proba: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Water is what lies at or below sea level (the map's own water paint), and nothing else is."""
    p = proba.copy()
    sea = np.asarray(height_m) <= 0
    p[sea] = 0.0
    p[sea, WATER] = 1.0
    p[~sea, WATER] = 0.0
    p[~sea] /= np.maximum(p[~sea].sum(-1, keepdims=True), 1e-9)
    return p


@dataclass
class Segmenter:
    reducer: Reducer
    centroids: np.ndarray  # [6, K] land clusters
    cluster_to_class: list[int]  # class id per land cluster
    auto_assignment: list[int]  # what the Hungarian matching chose (before any override)
    cluster_descriptors: list[dict[str, float]]
    classifier: PixelClassifier
    train_accuracy: float

    def proba(self, terrain: np.ndarray, height_m: np.ndarray) -> np.ndarray:
        """Class probabilities [H, W, 7] with the water rule applied."""
        return apply_water_rule(self.classifier.proba(pixel_features(terrain, height_m)), height_m)

    def summary(self) -> dict:
        return {
            "features": list(FEATURE_NAMES),
            "reduction": f"random Fourier features ({self.reducer.omega.shape[1]}) + PCA "
            f"({self.reducer.pca.shape[1]})",
            "water": "pixels at or below sea level (height <= 0 m) are water; nothing else is",
            "land_clusters": len(self.centroids),
            "cluster_to_class": {str(i): CLASS_NAMES[c] for i, c in enumerate(self.cluster_to_class)},
            "auto_assignment": {str(i): CLASS_NAMES[c] for i, c in enumerate(self.auto_assignment)},
            "cluster_descriptors": self.cluster_descriptors,
            "classifier": "MLP 1x48 ReLU, class-balanced softmax, Adam 300 x 1024",
            "classifier_train_accuracy": self.train_accuracy,
        }


def fit_segmenter(
    samples: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    per_crop: int = 1500,
    override: dict[int, int] | None = None,
    water_share: float = 0.15,
) -> Segmenter:
    """Fit the whole pipeline on (terrain [H, W, 3] uint8, height [H, W] m) crops.

    Water is fixed by height (the map paints it; a cluster of its own would split into deep and coastal
    water and steal land classes), so the 6 land classes come from clustering land pixels only. The
    classifier learns all 7 (water samples make up ``water_share`` of its training pixels).
    """
    rng = np.random.default_rng(seed)
    xs, ds = [], []
    for ter, hgt in samples:
        f = pixel_features(ter, hgt).reshape(-1, len(FEATURE_NAMES))
        d = descriptors(ter, hgt)
        d = np.stack([d[n].ravel() for n in DESCRIPTOR_NAMES], -1)
        idx = rng.choice(len(f), min(per_crop, len(f)), replace=False)
        xs.append(f[idx])
        ds.append(d[idx])
    x, d = np.concatenate(xs), np.concatenate(ds)
    sea = x[:, FEATURE_NAMES.index("below_sea")] > 0.5
    xl, dl = x[~sea], d[~sea]
    k = len(LAND_CLASSES)
    if len(xl) < 50 * k:
        raise SegmentationError(f"only {len(xl)} land pixel samples; give more or larger crops with land")
    reducer = Reducer.fit(xl, rng)
    cent, lab = cluster(reducer(xl), k, seed)
    cdesc = np.stack([dl[lab == j].mean(0) for j in range(k)])
    auto = assign_clusters(cdesc, LAND_CLASSES)
    mapping = list(auto)
    for j, c in (override or {}).items():
        mapping[j] = c
    n_w = min(int(sea.sum()), int(water_share / (1 - water_share) * len(xl)))
    xw = x[sea][rng.choice(int(sea.sum()), n_w, replace=False)] if n_w else x[:0]
    xt = np.concatenate([xl, xw])
    yt = np.concatenate([np.array(mapping)[lab], np.full(len(xw), WATER)])
    clf = PixelClassifier.fit(xt, yt, rng)
    acc = float((clf.proba(xt).argmax(-1) == yt).mean())
    return Segmenter(
        reducer=reducer,
        centroids=cent,
        cluster_to_class=mapping,
        auto_assignment=auto,
        cluster_descriptors=[
            {n: float(v) for n, v in zip(DESCRIPTOR_NAMES, row, strict=True)}
            | {"share_of_land": float((lab == j).mean())}
            for j, row in enumerate(cdesc)
        ],
        classifier=clf,
        train_accuracy=acc,
    )
