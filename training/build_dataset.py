"""Build a training set in the public layout from a global terrain map + height map.

    python -m training.build_dataset --source procedural --out DIR [--count N] [--size S] [--seed N]
    python -m training.build_dataset --source earth --out DIR ...      (Natural Earth + SRTM via Marble)
    python -m training.build_dataset --source maps --terrain MAP --height MAP --out DIR ...

What the original did (seed document, "Building the Training Data"): random crops with selection against
featureless ones (mostly ocean), each rescaled horizontally by latitude to undo the projection's stretch;
per-pixel features from colour, height and neighbourhood, a non-linear reduction, 7 clusters, a classifier
trained on them, and post-processing into large smooth blobs with randomised parameters per crop.
Output: NAME_t.png, NAME_h.png (16-bit), NAME_i2.png (+ NAME_albedo.png for the procedural world),
manifest.json (sources, parameters, seed, class shares, crop coordinates, train/val split by region) and
contact_sheet.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from terrain_core.exits import run_entry
from terrain_core.labels import CLASS_NAMES, NUM_CLASSES, PALETTE
from terrain_core.output_set import check_output_dir
from training.data.crops import RegionSplit, WorldMap, draw_boxes, extract, is_featureful, source_columns
from training.data.files import DataFileError, atomic_write, read_json, save_png
from training.data.segment import (
    BlobParams,
    SegmentationError,
    Segmenter,
    fit_segmenter,
    postprocess,
    read_override,
)

MANIFEST_FORMAT = "terrain-gan-dataset"
MANIFEST_VERSION = 1
SOURCES = ("procedural", "earth", "maps")
MARGIN = 24  # extra output pixels around each crop so neighbourhood features see past its edges


class BuildError(ValueError):
    """The build cannot go on; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class BuildOptions:
    """What ``build`` makes: the command line's options, typed (the fields follow ``parser``'s order,
    which is also the order of "parameters" in manifest.json)."""

    source: str  # "procedural" (the built-in world), "earth" (Natural Earth + SRTM) or "maps" (the user's)
    out: Path  # output folder (public layout + manifest.json)
    count: int = 200  # number of crops
    size: int = 256  # crop side in pixels, a multiple of 32
    seed: int = 0  # every random choice of the build comes from it
    terrain: str | None = None  # source "maps": global terrain map (RGB, equirectangular), as given
    height: str | None = None  # source "maps": global height map (8- or 16-bit gray, same extent), as given
    lat_range: tuple[float, float] = (-90.0, 90.0)  # source "maps": latitudes of the bottom and top edges
    lon_span: float = 360.0  # source "maps": degrees across
    height_range_m: tuple[float, float] = (0.0, 6000.0)  # source "maps": metres of the lowest, highest code
    height_range_out: tuple[float, float] | None = None  # metres of NAME_h.png's 0..65535 (None: map range)
    classes: str | None = None  # JSON file overriding the cluster -> class assignment (None: automatic)
    val_share: float = 0.12  # share of longitude bands held out, in [0, 1)
    bands: int = 16  # most longitude bands for the region split, >= 2
    min_land: float = 0.15  # least land share of an accepted crop
    min_relief_m: float = 150.0  # least 5-95% land relief (or colour) of an accepted crop
    max_lat: float = 70.0  # crop centres within +- this latitude (degrees)
    world_rows: int | None = None  # source "procedural": world map rows (None: 4 x size, 256..2048)
    prefix: str = ""  # prefix of the map names
    overwrite: bool = False  # write into a folder that already holds a dataset
    resume: bool = False  # keep crops an interrupted run of the same command already wrote
    quiet: bool = False  # no progress or log lines

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BuildError(f"unknown --source {self.source!r}; one of {', '.join(SOURCES)}")
        if self.count < 1:
            raise BuildError(f"--count must be >= 1, got {self.count}")
        if self.size < 32 or self.size % 32:
            raise BuildError(
                f"--size must be a positive multiple of 32 (the generator's downsampling), got {self.size}"
            )
        if not 0 <= self.val_share < 1:
            raise BuildError(f"--val-share must be in [0, 1), got {self.val_share}")
        if self.bands < 2:
            raise BuildError(f"--bands must be >= 2, got {self.bands}")

    def manifest_parameters(self) -> dict:
        """The options manifest.json records: all but where and how the build ran, None left out."""
        skip = ("out", "overwrite", "quiet", "resume")
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


# ------------------------------------------------------------------------------------------- progress
class Progress:
    """A one-line progress bar on stderr (no dependency); plain lines when stderr is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last = -1.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty or now - self.last >= 5.0 or done == self.total:
            el = now - self.t0
            eta = el / done * (self.total - done) if done else float("nan")
            width = 30
            fill = int(width * done / max(self.total, 1))
            bar = "#" * fill + "." * (width - fill)
            line = f"[{self.label}] |{bar}| {done}/{self.total} {el:.0f}s eta {eta:.0f}s"
            print(
                ("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True
            )
            self.last = now
            if self.tty and done == self.total:
                print(file=sys.stderr)


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"[build] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- sources
def load_source(opts: BuildOptions) -> tuple[WorldMap, dict]:
    """The world map for ``opts.source`` and a provenance dict for the manifest."""
    if opts.source == "procedural":
        from training.data.procedural import WorldParams, make_world

        rows = opts.world_rows or max(256, min(2048, 4 * opts.size))
        p = WorldParams(rows=rows, cols=2 * rows)
        w = make_world(opts.seed, p)
        world = WorldMap(w.terrain, w.height_m, p.lat_range, p.lon_span, albedo=w.albedo)
        info = {
            "source": "procedural",
            "sources": [{"name": "procedural world (training.data.procedural)", "license": "generated"}],
            "world": w.info(),
            "world_build_s": round(w.timings["total_s"], 2),
        }
        return world, info
    if opts.source == "earth":
        from training.data.earth import load_earth

        return load_earth(quiet=opts.quiet)
    from training.data.earth import load_user_maps

    if not opts.terrain or not opts.height:
        raise BuildError("--source maps needs --terrain MAP and --height MAP (equirectangular, same extent)")
    return load_user_maps(
        Path(opts.terrain), Path(opts.height), opts.lat_range, opts.lon_span, opts.height_range_m
    )


# --------------------------------------------------------------------------------------------- build
def height_range(world: WorldMap) -> tuple[float, float]:
    """The fixed metres range that 0..65535 stands for in every NAME_h.png of the set (rounded out)."""
    lo = math.floor(float(world.height_m.min()) / 100.0) * 100.0
    hi = math.ceil(float(world.height_m.max()) / 100.0) * 100.0
    return lo, max(hi, lo + 100.0)


def encode_height(h_m: np.ndarray, rng_m: tuple[float, float]) -> np.ndarray:
    lo, hi = rng_m
    return np.clip(np.round((h_m - lo) / (hi - lo) * 65535.0), 0, 65535).astype(np.uint16)


def select_crops(world, count, size, seed, split, min_land, min_relief_m, max_abs_lat, quiet):
    """``count`` accepted crop boxes (deterministic from ``seed``), each with its band and split."""
    rng = np.random.default_rng([seed, 1])
    gen = draw_boxes(world, count, size, rng, split, max_abs_lat=max_abs_lat, margin=MARGIN)
    boxes, tries = [], 0
    max_tries = 60 * count + 200
    prog = Progress(count, "select", enabled=not quiet)
    while len(boxes) < count:
        box, band = next(gen)
        tries += 1
        if tries > max_tries:
            raise BuildError(
                f"only {len(boxes)} of {count} crops passed the featureless-crop test after {tries} tries; "
                "lower --min-land / --min-relief-m or --count"
            )
        # Cheap test on the raw (unrescaled, subsampled) window before the full extraction.
        r0, c0 = box.row, int(box.col)
        cols = np.arange(c0, c0 + int(box.cols), max(1, int(box.cols) // 64)) % world.shape[1]
        rows = np.arange(r0, r0 + size, max(1, size // 64))
        hw = world.height_m[rows][:, cols]
        if not is_featureful(hw, world.terrain[rows][:, cols], min_land, min_relief_m):
            continue
        boxes.append((box, band, split.split_of(band)))
        prog.update(len(boxes))
    return boxes, tries


def fit_pipeline(world, boxes, seed, override, quiet) -> Segmenter:
    train = [b for b in boxes if b[2] == "train"] or boxes
    rng = np.random.default_rng([seed, 2])
    pick = rng.choice(len(train), min(len(train), 120), replace=False)
    samples = []
    for i in pick:
        c = extract(world, train[i][0], MARGIN)
        samples.append((c["terrain"], c["height_m"]))
    per_crop = max(400, 60000 // len(samples))
    return fit_segmenter(samples, seed, per_crop=per_crop, override=override)


def contact_sheet(
    out: Path, entries: list[dict], height_rng: tuple[float, float], n: int = 16
) -> Path | None:
    """Grid of (terrain, height hill-shade, segmentation) for up to ``n`` crops, spread over the set."""
    from PIL import Image

    from terrain_core.outputs import hillshade

    if not entries:
        return None
    pick = [entries[int(i)] for i in np.linspace(0, len(entries) - 1, min(n, len(entries))).round()]
    t = 128
    per_row = 4
    rows = math.ceil(len(pick) / per_row)
    sheet = Image.new("RGB", (per_row * (3 * t + 8), rows * (t + 8)), (255, 255, 255))
    for k, e in enumerate(pick):
        name = e["name"]
        with Image.open(out / f"{name}_t.png") as im:
            ter = im.convert("RGB").resize((t, t), Image.BILINEAR)
        with Image.open(out / f"{name}_h.png") as im:
            h = np.asarray(im).astype(np.float32) / 65535.0 * (height_rng[1] - height_rng[0]) + height_rng[0]
        # Exaggeration per crop: its steep (90th percentile) land slopes shade as 45 degrees.
        g = np.hypot(*np.gradient(np.maximum(h, 0)))
        z = float(np.percentile(g[h > 0], 90)) if (h > 0).any() else 1.0
        s = hillshade(np.maximum(h, 0) / max(z, 1e-3), 1.0, gradient="central", dtype=np.float64)
        tint = np.where(h[..., None] > 0, np.stack([s * 235 + 20] * 3, -1), [[[90, 130, 200]]])
        hs = Image.fromarray(tint.astype(np.uint8)).resize((t, t), Image.BILINEAR)
        with Image.open(out / f"{name}_i2.png") as im:
            seg = im.convert("RGB").resize((t, t), Image.NEAREST)
        x, y = (k % per_row) * (3 * t + 8), (k // per_row) * (t + 8)
        for j, im in enumerate((ter, hs, seg)):
            sheet.paste(im, (x + j * t, y))
    path = out / "contact_sheet.png"
    atomic_write(path, lambda p: sheet.save(p, format="PNG"))
    return path


def build(opts: BuildOptions) -> dict:
    """Write the dataset ``opts`` describes; returns its manifest (also written to OUT/manifest.json)."""
    out = Path(opts.out)
    check_destination(out, opts.overwrite)
    override = read_override(opts.classes) if opts.classes else None
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    world, info = load_source(opts)
    out.mkdir(parents=True, exist_ok=True)  # only once the source is read: a bad source leaves no folder
    timings["source"] = time.perf_counter() - t0
    log(
        f"source {info['source']}: {world.shape[1]}x{world.shape[0]} map in {timings['source']:.1f}s",
        opts.quiet,
    )
    split = region_split(world, opts)
    t1 = time.perf_counter()
    boxes, tries = select_crops(
        world,
        opts.count,
        opts.size,
        opts.seed,
        split,
        opts.min_land,
        opts.min_relief_m,
        opts.max_lat,
        opts.quiet,
    )
    timings["select"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    seg = fit_pipeline(world, boxes, opts.seed, override, opts.quiet)
    timings["fit_segmentation"] = time.perf_counter() - t1
    log(
        f"segmentation fitted in {timings['fit_segmentation']:.1f}s (classifier train accuracy "
        f"{seg.train_accuracy:.3f}); clusters -> "
        + ", ".join(f"{k}:{v}" for k, v in seg.summary()["cluster_to_class"].items()),
        opts.quiet,
    )
    hr = tuple(opts.height_range_out) if opts.height_range_out else height_range(world)
    t1 = time.perf_counter()
    crops = write_crops(out, world, boxes, seg, hr, opts)
    timings["crops"] = time.perf_counter() - t1

    manifest = make_manifest(opts, info, world, split, seg, crops, tries, hr, timings)
    write_manifest(out, manifest)
    sheet = contact_sheet(out, crops.entries, hr)
    manifest["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
    manifest["contact_sheet"] = sheet.name if sheet else None
    write_manifest(out, manifest)
    log(
        f"wrote {len(crops.entries)} crops ({len(manifest['splits']['train'])} train, "
        f"{len(manifest['splits']['val'])} "
        f"val) to {out} in {manifest['timings_s']['total']:.1f}s; class shares "
        + ", ".join(f"{k} {v:.3f}" for k, v in manifest["class_shares"].items()),
        opts.quiet,
    )
    return manifest


def check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} exists and is not a folder")
    if (out / "manifest.json").exists() and not overwrite:
        raise BuildError(f"{out} already holds a dataset (manifest.json); pass --overwrite or another --out")


def region_split(world: WorldMap, opts: BuildOptions) -> RegionSplit:
    """Longitude bands, at least ~2.5 crops wide (at 40 degrees latitude) so that crops fit inside one
    band, some of them held out for validation."""
    crop_cols = source_columns(opts.size, 40.0, world.dlat, world.dlon) + 2 * MARGIN
    n_bands = max(2, min(opts.bands, int(world.shape[1] / (2.5 * crop_cols))))
    return RegionSplit.make(world.height_m > 0, n_bands, opts.val_share, opts.seed)


@dataclass
class Crops:
    """What ``write_crops`` wrote: one manifest entry per crop, class pixel counts per split, and the
    share of pixels per crop where water (class 0) and height <= 0 agree."""

    entries: list[dict]
    counts: dict[str, np.ndarray]
    water_ok: list[float]
    resumed: int  # crops found complete on disk (--resume)


def write_crops(
    out: Path, world: WorldMap, boxes: list, seg: Segmenter, hr: tuple[float, float], opts: BuildOptions
) -> Crops:
    """Each accepted box -> NAME_t.png, NAME_h.png, NAME_i2.png (+ NAME_albedo.png) and its entry."""
    crops = Crops(
        [], {"train": np.zeros(NUM_CLASSES, np.int64), "val": np.zeros(NUM_CLASSES, np.int64)}, [], 0
    )
    prog = Progress(len(boxes), "crops", enabled=not opts.quiet)
    digits = max(4, len(str(len(boxes))))
    for i, (box, band, which) in enumerate(boxes):
        name = f"{opts.prefix}{i:0{digits}d}"
        bp = BlobParams.random(np.random.default_rng([opts.seed, 3, i]), opts.size)
        files = [out / f"{name}{sfx}" for sfx in ("_t.png", "_h.png", "_i2.png")]
        if world.albedo is not None:
            files.append(out / f"{name}_albedo.png")
        if opts.resume and all(f.is_file() for f in files):
            # Written by an interrupted run of the same command (files are written atomically, and the
            # crops, the segmentation fit and the blob parameters are all functions of the seed).
            lab, hgt = read_back(out, name, hr)
            crops.resumed += 1
        else:
            lab, hgt = write_crop(out, name, world, box, seg, bp, hr, opts.size)
        cnt = np.bincount(lab.ravel(), minlength=NUM_CLASSES)
        crops.counts[which] += cnt
        crops.water_ok.append(((lab == 0) == (hgt <= 0)).mean())
        crops.entries.append(crop_entry(name, which, band, box, bp, cnt, lab.size))
        prog.update(i + 1)
    return crops


def write_crop(
    out: Path,
    name: str,
    world: WorldMap,
    box,
    seg: Segmenter,
    bp: BlobParams,
    hr: tuple[float, float],
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One crop's files; returns its (labels, height in metres)."""
    c = extract(world, box, MARGIN)
    lab = postprocess(seg.proba(c["terrain"], c["height_m"]), bp)
    core = (slice(MARGIN, MARGIN + size),) * 2
    lab = lab[core]
    ter, hgt = c["terrain"][core], c["height_m"][core]
    save_png(out / f"{name}_t.png", ter)
    save_png(out / f"{name}_h.png", encode_height(hgt, hr))
    save_png(out / f"{name}_i2.png", PALETTE[lab])
    if "albedo" in c:
        save_png(out / f"{name}_albedo.png", c["albedo"][core])
    return lab, hgt


def crop_entry(name: str, which: str, band: int, box, bp: BlobParams, cnt: np.ndarray, pixels: int) -> dict:
    """A crop's manifest entry: where it came from, its split and blob parameters, its class shares."""
    return {
        "name": name,
        "split": which,
        "band": band,
        "lat": round(box.lat, 4),
        "lon": round(box.lon, 4),
        "row": box.row,
        "col": round(box.col, 3),
        "src_rows": box.size,
        "src_cols": round(box.cols, 3),
        "size": box.size,
        "x_scale": round(box.size / box.cols, 5),
        "blobs": asdict(bp),
        "class_shares": {CLASS_NAMES[k]: round(float(v) / pixels, 5) for k, v in enumerate(cnt)},
    }


def class_shares(counts: np.ndarray) -> dict[str, float]:
    tot = max(int(counts.sum()), 1)
    return {CLASS_NAMES[k]: round(float(counts[k]) / tot, 5) for k in range(NUM_CLASSES)}


def make_manifest(
    opts: BuildOptions,
    info: dict,
    world: WorldMap,
    split: RegionSplit,
    seg: Segmenter,
    crops: Crops,
    tries: int,
    hr: tuple[float, float],
    timings: dict[str, float],
) -> dict:
    """manifest.json's content (its total time and contact sheet are added once those exist)."""
    dy_m = math.radians(world.dlat) * 6_371_000.0
    entries = crops.entries
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        **info,
        "seed": opts.seed,
        "parameters": opts.manifest_parameters(),
        "map_shape": list(world.shape),
        "lat_range": list(world.lat_range),
        "lon_span": world.lon_span,
        "size": opts.size,
        "count": len(entries),
        "crop_tries": tries,
        "resumed_crops": crops.resumed,
        "height_range_m": [float(hr[0]), float(hr[1])],
        "height_encoding": "metres = lo + uint16 / 65535 * (hi - lo), [lo, hi] = height_range_m",
        "cell_size_m": round(dy_m, 2),
        "class_order": list(CLASS_NAMES),
        "palette": PALETTE.tolist(),
        "class_shares": class_shares(crops.counts["train"] + crops.counts["val"]),
        "class_shares_by_split": {k: class_shares(v) for k, v in crops.counts.items()},
        "water_matches_sea_level": round(float(np.mean(crops.water_ok)), 4),
        "split": {
            "method": "longitude bands; a crop lies wholly inside one band; val bands drawn with the seed",
            "bands": split.n_bands,
            "val_bands": list(split.val_bands),
            "band_width_deg": world.lon_span / split.n_bands,
        },
        "splits": {s: [e["name"] for e in entries if e["split"] == s] for s in ("train", "val")},
        "segmentation": seg.summary(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "crops": entries,
    }


def read_back(out: Path, name: str, hr: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, height in metres) of a crop already on disk."""
    from terrain_core.labels import labels_from_rgb
    from training.data.files import read_image

    lab = labels_from_rgb(read_image(out / f"{name}_i2.png")[..., :3], max_mean_distance=None)
    h16 = read_image(out / f"{name}_h.png").astype(np.float32)
    return lab, hr[0] + h16 / 65535.0 * (hr[1] - hr[0])


def write_manifest(out: Path, manifest: dict) -> Path:
    text = json.dumps(manifest, indent=1, sort_keys=False)
    return atomic_write(Path(out) / "manifest.json", lambda p: p.write_text(text))


def read_manifest(root: str | Path) -> dict:
    """OUT/manifest.json of a built dataset (BuildError when it is missing, unreadable or not one)."""
    p = Path(root) / "manifest.json"
    m = read_json(p, BuildError)
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise BuildError(f"{p} is not a {MANIFEST_FORMAT} manifest")
    return m


# ---------------------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.build_dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--out", required=True, help="output folder (public layout + manifest.json)")
    p.add_argument("--count", type=int, default=200, help="number of crops (default 200)")
    p.add_argument("--size", type=int, default=256, help="crop side in pixels, multiple of 32 (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--terrain", help="--source maps: global terrain map (RGB, equirectangular)")
    p.add_argument("--height", help="--source maps: global height map (8- or 16-bit gray, same extent)")
    p.add_argument("--lat-range", type=float, nargs=2, default=(-90.0, 90.0), metavar=("SOUTH", "NORTH"),
                   help="--source maps: latitudes of the bottom and top edges (default -90 90)")  # fmt: skip
    p.add_argument(
        "--lon-span", type=float, default=360.0, help="--source maps: degrees across (default 360)"
    )
    p.add_argument("--height-range-m", type=float, nargs=2, default=(0.0, 6000.0), metavar=("LO", "HI"),
                   help="--source maps: metres of the lowest and highest code (default 0 6000)")  # fmt: skip
    p.add_argument("--height-range-out", type=float, nargs=2, metavar=("LO", "HI"),
                   help="metres that 0..65535 stand for in NAME_h.png (default: map range)")  # fmt: skip
    p.add_argument("--classes", help="JSON file overriding the cluster -> class assignment, e.g. "
                   '{"0": "plains", "4": "desert"} (land clusters 0..5 as in manifest.json)')  # fmt: skip
    p.add_argument("--val-share", type=float, default=0.12, help="share of longitude bands held out")
    p.add_argument("--bands", type=int, default=16, help="most longitude bands for the region split")
    p.add_argument("--min-land", type=float, default=0.15, help="least land share of an accepted crop")
    p.add_argument("--min-relief-m", type=float, default=150.0, help="least 5-95%% land relief (or colour)")
    p.add_argument("--max-lat", type=float, default=70.0, help="crop centres within +-this latitude")
    p.add_argument("--world-rows", type=int, help="--source procedural: world map rows (default 4 x size)")
    p.add_argument("--prefix", default="", help="prefix of the map names")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already has a dataset")
    p.add_argument("--resume", action="store_true",
                   help="keep crops an interrupted run of the same command already wrote")  # fmt: skip
    p.add_argument("--quiet", action="store_true")
    return p


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The parsed command line as typed options (checked: a bad value raises BuildError)."""

    def pair(v) -> tuple[float, float] | None:
        return None if v is None else (float(v[0]), float(v[1]))

    return BuildOptions(
        **{
            **vars(args),
            "out": Path(args.out),
            "lat_range": pair(args.lat_range),
            "height_range_m": pair(args.height_range_m),
            "height_range_out": pair(args.height_range_out),
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Exit codes as ``terrain_core.exits``: 2 with one line for bad arguments, data or output paths."""
    args = parser().parse_args(argv)

    def body() -> int:
        opts = options_from_args(args)
        check_output_dir(opts.out, "--out")  # before reading any source
        build(opts)
        return 0

    return run_entry(
        body,
        expected=(BuildError, DataFileError, SegmentationError, ValueError),
        interrupted="interrupted; files written so far are complete (rerun with --resume to finish)",
    )


if __name__ == "__main__":
    sys.exit(main())
