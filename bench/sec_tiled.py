"""Section tiled: a large map generated in tiles with the default model, against an untiled map.

Full: 4096x4096 (tiled automatically by TerrainGenerator) vs 1024x1024 untiled; quick: 2048 vs 512.
Each generation runs in a fresh process (peak RSS over the process's life, imports included, the figure
a user sees), alternating untiled and tiled runs. Targets: peak <= 2 GiB; seconds per output megapixel
at most 1.3x the untiled figure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.common import GiB, MiB, Options, Section, median, paired_ratio, run_child, verdict

PEAK_TARGET = 2 * GiB
TIME_TARGET = 1.3


def _child_runs(small: int, big: int, tile: int | None, rounds: int, threads: int) -> dict[str, list[dict]]:
    """``rounds`` fresh generate processes per size, alternating untiled and tiled."""
    from bench.maps import class_map

    runs: dict[str, list[dict]] = {"untiled": [], "tiled": []}
    with tempfile.TemporaryDirectory(prefix="bench-tiled-") as tmp:
        paths = {}
        for name, n in (("untiled", small), ("tiled", big)):
            paths[name] = str(Path(tmp) / f"labels_{n}.npy")
            np.save(paths[name], class_map(n))
        for _ in range(rounds):
            for name, n, t in (("untiled", small, 0), ("tiled", big, tile)):
                args = {"model": None, "labels": paths[name], "size": n, "tile": t}
                runs[name].append(run_child("generate", args, threads))
    return runs


def _row(name: str, n: int, rr: list[dict], per_mp: dict[str, list[float]]) -> dict:
    return {
        "run": name,
        "size": n,
        "tiles": int(rr[0]["timings"][0].get("tiles", 1)),
        "median_s": median([r["seconds"][0] for r in rr]),
        "s/MP": median(per_mp[name]),
        "network_s": median([r["timings"][0]["network"] for r in rr]),
        "assemble_s": median([r["timings"][0].get("assemble", 0.0) for r in rr]),
        "s/MP vs untiled": paired_ratio(per_mp[name], per_mp["untiled"]),
        "peak_RSS_MiB": max(r["peak_rss"] for r in rr) / MiB,
        "rise_MiB": max(r["rise"] for r in rr) / MiB,
    }


def run(opts: Options) -> Section:
    from terrain_core.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, tile_layout

    big, small = (256, 128) if opts.smoke else (2048, 512) if opts.quick else (4096, 1024)
    tile = 128 if opts.smoke else None  # None: the runtime's own choice (tiles above 1024 px)
    sec = Section(
        "tiled",
        target=f"{big}x{big} tiled with TerrainGenerator.load(None): peak RSS <= 2 GiB and s/MP <= "
        f"{TIME_TARGET:g} x {small}x{small} untiled",
        ratio_label="s/MP tiled / untiled",
    )
    rounds = opts.reps(3, 2)
    runs = _child_runs(small, big, tile, rounds, opts.threads)
    variants = (("untiled", small), ("tiled", big))
    per_mp = {name: [r["seconds"][0] / (n * n / 1e6) for r in runs[name]] for name, n in variants}
    ratio = paired_ratio(per_mp["tiled"], per_mp["untiled"])
    peak = max(r["peak_rss"] for r in runs["tiled"])
    sec.ratio = ratio
    sec.status = verdict(ratio <= TIME_TARGET and peak <= PEAK_TARGET)
    sec.rows += [_row(name, n, runs[name], per_mp) for name, n in variants]
    t = runs["tiled"][0]
    # the layout the runtime chose: the fewest tiles of at most DEFAULT_TILE px, shrunk to fit
    tile_px = tile or DEFAULT_TILE
    length, starts = tile_layout(big, tile_px, min(DEFAULT_OVERLAP, tile_px // 2), 32)
    sec.checks = {
        "peak_rss_tiled": peak,
        "time_ratio": ratio,
        "runtime": t["runtime"],
        "model": t["model"],
        "finite": all(r["height_finite"] for rr in runs.values() for r in rr),
        "shape": t["shape"],
        "tile_px": length,
    }
    sec.notes.append(
        f"model {t['model']} on {t['runtime']}; {rounds} fresh processes per size, alternating; peak RSS "
        f"is over the whole process (imports, model, label map and outputs included): "
        f"{peak / GiB:.2f} GiB (target <= 2 GiB)"
    )
    sec.notes.append(
        f"tiles: {len(starts)} per side of {length} px (terrain_core.tiling.tile_layout), "
        f"{(len(starts) * length / big) ** 2:.2f}x the output pixels computed"
    )
    return sec
