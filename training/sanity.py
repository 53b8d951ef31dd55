"""Semantic checks any user would make of a trained model, as numbers.

    python -m training.sanity [--model PATH] [--size 256] [--json FILE]

On a map painted water in the middle, forest around it and mountains at the edges: water should come out
low, flat and blue, mountains high and rough, forest green; changing only the seed should change detail,
not layout. Prints the figures and which hold; exit status 1 when any fails.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from terrain_core.labels import class_by_name
from terrain_core.relief_metrics import border_step_index, box_blur, layout_detail_correlation
from terrain_core.runtime import TerrainGenerator


def lake_forest_mountains(size: int = 256) -> np.ndarray:
    """Class ids: a lake in the middle, a forest ring, mountains towards the edges."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    r = np.hypot(yy, xx)
    m = np.full((size, size), class_by_name("mountains").id, np.uint8)
    m[r < 0.36] = class_by_name("forest").id
    m[r < 0.18] = class_by_name("water").id
    return m


def _roughness(h_m: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute deviation of the height from its 9x9 local mean, in metres, inside ``mask``."""
    return float(np.abs(h_m - box_blur(h_m, 9))[mask].mean())


def semantic_checks(gen: TerrainGenerator, size: int = 256, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    if size < 128:
        raise ValueError(f"size must be at least 128 (a forest ring wide enough to measure), got {size}")
    labels = lake_forest_mountains(size)
    # Compare regions at least 8 px from class borders, where the generator blends neighbouring classes.
    ids = {n: class_by_name(n).id for n in ("water", "forest", "mountains")}
    masks = {n: box_blur((labels == i).astype(np.float32), 17) > 0.999 for n, i in ids.items()}
    results = [gen.generate(labels, seed=s) for s in seeds]
    r0 = results[0]
    h = r0.height_m
    mean_h = {n: float(h[m].mean()) for n, m in masks.items()}
    rough = {n: _roughness(h, m) for n, m in masks.items()}
    rgb = {n: r0.texture[m].mean(0).tolist() for n, m in masks.items()}
    layout_corr, detail_corr = layout_detail_correlation([r.height_m for r in results])
    w, f = rgb["water"], rgb["forest"]
    checks = {
        "water lower than forest": mean_h["water"] < mean_h["forest"],
        "forest lower than mountains": mean_h["forest"] < mean_h["mountains"],
        "water flatter than mountains (roughness)": rough["water"] < 0.5 * rough["mountains"],
        "water is blue (B > R and B > G)": w[2] > w[0] and w[2] > w[1],
        "forest is green (G > R and G > B)": f[1] > f[0] and f[1] > f[2],
        "seed keeps the layout (smoothed height correlation > 0.8)": layout_corr > 0.8,
        "seed changes the detail (detail correlation < 0.8)": detail_corr < 0.8,
    }
    return {
        "model": gen.info.get("name", "") or str(getattr(gen, "path", "")),
        "size": size,
        "seeds": list(seeds),
        "mean_height_m": mean_h,
        "roughness_m": rough,
        "mean_texture_rgb": rgb,
        "layout_correlation": layout_corr,
        "detail_correlation": detail_corr,
        # relief along the forest/mountain border over relief inside them (real terrain: about 0.5-1.0)
        "border_step_index": float(np.mean([border_step_index(r.height_m, labels) for r in results])),
        "checks": checks,
        "passed": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.sanity", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=".onnx or .safetensors (default: the built-in model)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    try:
        rep = semantic_checks(TerrainGenerator.load(a.model), a.size)
    except ValueError as e:  # a bad model file (ModelFileError) or size: the message says what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, ok in rep["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(
        "mean height m: "
        + ", ".join(f"{k} {v:.0f}" for k, v in rep["mean_height_m"].items())
        + " | roughness m: "
        + ", ".join(f"{k} {v:.1f}" for k, v in rep["roughness_m"].items())
        + f" | layout corr {rep['layout_correlation']:.2f}, detail corr {rep['detail_correlation']:.2f}"
        + f", border-step index {rep['border_step_index']:.2f}"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
