"""Section erosion: terrain_core.erosion at the default level against the generator, in the same run.

Full: the default model generates a 512x512 and a 1024x1024 map (island example); erosion at ``medium``
is timed on both, in alternation with the generator at 512. Targets: erosion at 512 <= 10x the generator
at 512; erosion at 1024 <= 4.5x erosion at 512. A 4096x4096 map (the 1024 one upsampled, bilinear) is
eroded in a fresh process for its peak memory: <= 2 GiB. Quick: the same at 512/1024 and 2048 for the
memory; smoke: 128/256 and 512.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.common import GiB, MiB, Options, Section, interleaved, median, paired_ratio, run_child, verdict

GEN_TARGET = 10.0
SCALE_TARGET = 4.5
PEAK_TARGET = 2 * GiB


def _upsample(a: np.ndarray, f: int, nearest: bool) -> np.ndarray:
    if nearest:
        return np.repeat(np.repeat(a, f, 0), f, 1)
    n = a.shape[0]
    x = (np.arange(n * f) + 0.5) / f - 0.5
    x0 = np.clip(np.floor(x).astype(int), 0, n - 1)
    x1 = np.clip(x0 + 1, 0, n - 1)
    t = np.clip(x - x0, 0, 1)
    rows = a[x0] * (1 - t)[:, None] + a[x1] * t[:, None]
    return (rows[:, x0] * (1 - t)[None] + rows[:, x1] * t[None]).astype(np.float32)


def run(opts: Options) -> Section:
    from bench.maps import class_map
    from terrain_core.erosion import erode
    from terrain_core.runtime import TerrainGenerator

    small, large, huge = (128, 256, 512) if opts.smoke else (512, 1024, 2048 if opts.quick else 4096)
    sec = Section(
        "erosion",
        target=f"medium erosion at {small}^2 <= {GEN_TARGET:g}x the generator at {small}^2; at {large}^2 <= "
        f"{SCALE_TARGET:g}x its own {small}^2 time; {huge}^2 peak RSS <= 2 GiB",
        ratio_label=f"erosion / generator at {small}^2",
    )
    gen = TerrainGenerator.load(None, threads=opts.threads)
    labels = {n: class_map(n) for n in (small, large)}
    heights = {n: gen.generate(labels[n], seed=0).height_m for n in (small, large)}
    reps = opts.reps(3, 2)
    t = interleaved(
        {
            "generator": lambda: gen.generate(labels[small], seed=0),
            "erosion": lambda: erode(heights[small], labels[small], strength="medium", seed=0),
        },
        reps,
        warmup=1,
    )
    t_big = interleaved(
        {
            "erosion_small": lambda: erode(heights[small], labels[small], strength="medium", seed=0),
            "erosion_large": lambda: erode(heights[large], labels[large], strength="medium", seed=0),
        },
        opts.reps(2, 2),
        warmup=0,
    )
    ratio = paired_ratio(t["erosion"], t["generator"])
    scale = paired_ratio(t_big["erosion_large"], t_big["erosion_small"])
    f = huge // large
    with tempfile.TemporaryDirectory(prefix="bench-erosion-") as tmp:
        hp, lp = str(Path(tmp) / "h.npy"), str(Path(tmp) / "l.npy")
        np.save(hp, _upsample(heights[large], f, nearest=False))
        np.save(lp, _upsample(labels[large], f, nearest=True))
        child = run_child("erode", {"height": hp, "labels": lp, "level": "medium"}, opts.threads)
    peak = child["peak_rss"]
    sec.ratio = ratio
    sec.status = verdict(ratio <= GEN_TARGET and scale <= SCALE_TARGET and peak <= PEAK_TARGET)
    sec.rows += [
        {"run": f"generator {small}^2", "median_s": median(t["generator"]), "vs generator": 1.0},
        {"run": f"erosion {small}^2", "median_s": median(t["erosion"]), "vs generator": ratio},
        {"run": f"erosion {large}^2", "median_s": median(t_big["erosion_large"]), f"vs {small}^2": scale},
        {"run": f"erosion {huge}^2 (child)", "median_s": child["seconds"], "peak_RSS_MiB": peak / MiB},
    ]
    sec.checks = {
        "scale_ratio": scale,
        "peak_rss_bytes": peak,
        "huge_finite": child["finite"],
        "huge_balance_error": child["balance_error"],
    }
    sec.notes.append(
        f"{huge}^2 input: the {large}^2 generated map upsampled (bilinear heights, nearest classes); "
        f"peak RSS of a fresh process, imports included ({child['rise'] / MiB:.0f} MiB rise during erode)"
    )
    return sec
