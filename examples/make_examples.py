"""Draw the hand-designed example maps in this folder (run once; the PNGs are committed).

Each map is a composition of a few shapes with wobbly edges, the way a person paints with a hard brush:
island, valley with a river, mountain range, desert with lakes. Class ids as in terrain_core.labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from terrain_core.labels import class_by_name, rgb_from_labels  # noqa: E402

N = 512
yy, xx = np.mgrid[0:N, 0:N] / N  # rows (north at the top), columns, in 0..1


def wobble(seed: int, amp: float = 0.04, waves: int = 5) -> np.ndarray:
    """A smooth field of a few low-frequency waves: the unevenness of a hand-painted edge."""
    rng = np.random.default_rng(seed)
    out = np.zeros((N, N))
    for _ in range(waves):
        f = rng.uniform(2, 7, 2)
        p = rng.uniform(0, 2 * np.pi, 2)
        out += np.sin(2 * np.pi * f[0] * xx + p[0]) * np.cos(2 * np.pi * f[1] * yy + p[1])
    return amp * out / np.sqrt(waves)


def cid(name: str) -> int:
    return class_by_name(name).id


def island() -> np.ndarray:
    m = np.full((N, N), cid("water"), np.uint8)
    r = np.hypot(xx - 0.5, (yy - 0.52) * 1.15) + wobble(1, 0.05)
    m[r < 0.36] = cid("plains")
    m[(r < 0.30) & (xx + wobble(2) < 0.55)] = cid("forest")
    m[(r < 0.30) & (xx + wobble(3) >= 0.55)] = cid("desert")
    m[r < 0.17] = cid("hills")
    m[np.hypot(xx - 0.47, yy - 0.48) + wobble(4, 0.03) < 0.08] = cid("mountains")
    return m


def river_valley() -> np.ndarray:
    m = np.full((N, N), cid("forest"), np.uint8)
    river_x = 0.5 + 0.12 * np.sin(yy * 2 * np.pi * 1.3) + wobble(5, 0.02)
    d = np.abs(xx - river_x)
    m[d > 0.16 + wobble(6, 0.04)] = cid("hills")
    m[d > 0.30 + wobble(7, 0.05)] = cid("mountains")
    m[d < 0.10 + wobble(8, 0.03)] = cid("plains")
    m[d < 0.022] = cid("water")
    return m


def mountain_range() -> np.ndarray:
    m = np.full((N, N), cid("plains"), np.uint8)
    ridge = np.abs(yy - (0.45 + 0.15 * (xx - 0.5) + 0.06 * np.sin(xx * 9))) + wobble(9, 0.04)
    m[ridge < 0.33] = cid("forest")
    m[ridge < 0.22] = cid("hills")
    m[ridge < 0.12] = cid("mountains")
    m[(ridge < 0.05) & (np.sin(xx * 20 + wobble(10, 2.0)) > 0.2)] = cid("highland")
    lake = np.hypot(xx - 0.2, yy - 0.85) + wobble(11, 0.02)
    m[lake < 0.06] = cid("water")
    return m


def desert_lakes() -> np.ndarray:
    m = np.full((N, N), cid("desert"), np.uint8)
    m[yy + wobble(12, 0.05) < 0.18] = cid("highland")
    m[np.hypot(xx - 0.75, yy - 0.7) + wobble(13, 0.05) < 0.2] = cid("hills")
    for i, (cx, cy, r) in enumerate([(0.3, 0.5, 0.09), (0.55, 0.35, 0.05), (0.25, 0.8, 0.06)]):
        d = np.hypot(xx - cx, yy - cy) + wobble(20 + i, 0.02)
        m[(d < r + 0.035)] = cid("plains")
        m[d < r] = cid("water")
    return m


MAPS = {
    "island": island,
    "river_valley": river_valley,
    "mountain_range": mountain_range,
    "desert_lakes": desert_lakes,
}

if __name__ == "__main__":
    out = Path(__file__).resolve().parent
    for name, fn in MAPS.items():
        Image.fromarray(rgb_from_labels(fn())).save(out / f"{name}.png", optimize=True)
        print(out / f"{name}.png")
