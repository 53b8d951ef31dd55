"""The model's picture grid: validation maps through the model and through the add-on's Cycles preview.

    python -m training.model_grid --model MODEL --data DATA [--maps 6] [--size 256] [--out FILE.png]

One row per validation map: class map | flat texture | shaded texture | height hill-shade | Cycles render
| the real shaded map. The render is made by the add-on's headless batch script (``blender_addon/batch.py``
with the bpy module, in a child process) from the same map, model and seed, so it shows what a Blender user
gets; the other columns come from ``TerrainGenerator`` directly. Maps are chosen to cover many classes:
the validation maps with the most classes present, spread over the split.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from terrain_core.labels import PALETTE
from terrain_core.result import to_uint8
from training.data.files import save_png
from training.samples import height_tile

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "blender_addon" / "batch.py"
COLUMNS = ("map", "texture", "shaded", "height (hill-shade)", "Cycles render", "real")


class GridError(ValueError):
    """Bad arguments or a failed render; the message says what to do."""


def pick_maps(labels: np.ndarray, k: int, max_agreement: float = 0.5) -> list[int]:
    """Indices of up to ``k`` maps with the most classes present (at least 1% of the map; ties by order),
    skipping a map that agrees on more than ``max_agreement`` of its pixels with one already picked
    (neighbouring crops of one region), unless too few maps are left otherwise."""
    n = labels.shape[0]
    shares = np.stack([(labels == c).mean(axis=(1, 2)) for c in range(len(PALETTE))], axis=1)  # [N, 7]
    richness = (shares >= 0.01).sum(axis=1)
    order = sorted(range(n), key=lambda i: (-int(richness[i]), i))
    picked: list[int] = []
    for i in order:
        if len(picked) == k:
            break
        if all((labels[i] == labels[j]).mean() <= max_agreement for j in picked):
            picked.append(i)
    picked += [i for i in order if i not in picked][: k - len(picked)]
    return sorted(picked)


def render_maps(
    labels: np.ndarray, model: str, seed: int, render_wh: tuple[int, int], samples: int, work: Path
) -> list[np.ndarray]:
    """Cycles previews [h, w, 3] uint8 of each class map, through the batch script (bpy in a child)."""
    from PIL import Image

    maps = work / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels):
        Image.fromarray(PALETTE[lab]).save(maps / f"map_{i:02d}.png")
    out = work / "render"
    cmd = [sys.executable, str(BATCH), "--", "--input", str(maps), "--out", str(out), "--formats", "png"]
    cmd += ["--render", "--render-size", f"{render_wh[0]}x{render_wh[1]}", "--samples", str(samples)]
    cmd += ["--seed", str(seed), "--resolution", "0", "--model", model]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work))
    summary = out / "summary.json"
    if r.returncode != 0 or not summary.is_file():
        tail = (r.stdout + r.stderr).strip().splitlines()[-8:]
        raise GridError("the batch render failed:\n" + "\n".join(tail))
    renders = []
    for i in range(len(labels)):
        p = out / f"map_{i:02d}" / f"seed_{seed}" / "preview.png"
        if not p.is_file():
            raise GridError(f"the batch script wrote no preview for map {i} ({p})")
        with Image.open(p) as im:
            renders.append(np.asarray(im.convert("RGB")))
    return renders


def compose(rows: list[list[np.ndarray]], titles: tuple[str, ...] = COLUMNS, pad: int = 4) -> np.ndarray:
    """Rows of tiles (same height within the grid) with a title strip on top -> one uint8 image."""
    from PIL import Image, ImageDraw

    h = rows[0][0].shape[0]
    widths = [max(r[j].shape[1] for r in rows) for j in range(len(rows[0]))]
    title_h = 18
    img = np.full(
        (title_h + len(rows) * (h + pad) + pad, sum(widths) + pad * (len(widths) + 1), 3), 255, np.uint8
    )
    for i, row in enumerate(rows):
        x = pad
        y = title_h + pad + i * (h + pad)
        for j, tile in enumerate(row):
            img[y : y + h, x : x + tile.shape[1]] = tile
            x += widths[j] + pad
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    x = pad
    for j, t in enumerate(titles[: len(widths)]):
        draw.text((x + 2, 3), t, fill=(0, 0, 0))
        x += widths[j] + pad
    return np.asarray(im)


def model_grid(
    model: str,
    data: str,
    out: str,
    *,
    maps: int = 6,
    size: int = 256,
    seed: int = 0,
    samples: int = 16,
    split: str = "val",
) -> Path:
    from terrain_core.runtime import TerrainGenerator
    from training.evaluate import load_maps, resolve_model, split_or_all

    if maps < 1:
        raise GridError(f"--maps must be at least 1, got {maps}")
    if model == "default":
        from terrain_core.runtime import default_model_path

        model_path = default_model_path()
        if model_path is None:
            raise GridError("no built-in model is installed; pass --model FILE")
    else:
        model_path = resolve_model(model)
    root = Path(data)
    if not root.is_dir():
        raise GridError(f"--data {data} is not a folder (a dataset from python -m training.build_dataset)")
    names, _ = split_or_all(root, split)  # every map when the split is missing
    if not names:
        raise GridError(f"{data} holds no maps (NAME_i2.png with NAME_t.png and NAME_h.png)")
    ms = load_maps(root, names, size)
    idx = pick_maps(ms.labels, maps)
    gen = TerrainGenerator.load(model_path)
    rows = []
    with tempfile.TemporaryDirectory(prefix="terrain-grid-") as tmp:
        renders = render_maps(
            ms.labels[idx], str(model_path), seed, (size * 8 // 5, size), samples, Path(tmp)
        )
    for k, i in enumerate(idx):
        res = gen.generate(ms.labels[i], seed=seed)
        rows.append(
            [
                PALETTE[ms.labels[i]],
                res.texture_rgb,
                res.shaded_rgb,
                height_tile(res.height),
                renders[k],  # (size * 8 / 5) x size, as asked of the batch script
                to_uint8(ms.terrain[i]),
            ]
        )
    return save_png(Path(out), compose(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.model_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="model file or 'default' (the built-in model)")
    p.add_argument("--data", required=True, help="dataset folder (its validation split is used)")
    p.add_argument("--out", default="docs/model_grid.png", help="output PNG")
    p.add_argument("--maps", type=int, default=6, help="rows (maps) in the grid")
    p.add_argument("--size", type=int, default=256, help="map crop side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per render")
    p.add_argument("--split", default="val", help="dataset split ('' = every map)")
    a = p.parse_args(argv)
    try:
        path = model_grid(
            a.model, a.data, a.out, maps=a.maps, size=a.size, seed=a.seed, samples=a.samples, split=a.split
        )
    except ValueError as e:  # GridError, EvalError, ModelFileError: each says what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
