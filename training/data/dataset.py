"""PyTorch dataset over the public layout: ``NAME_t.png`` / ``NAME_h.png`` (16-bit) / ``NAME_i2.png``.

Normalisation is the original's: terrain RGB / 127.5 - 1, height uint16 / 32767.5 - 1; labels are the
nearest palette colour (Euclidean RGB), exactly the original's rule. One random crop is taken from all
three maps; nothing is flipped, because the baked hill-shading is always lit from the north-west.

Determinism: the crop of item ``i`` depends only on ``(seed, epoch, i)``, never on a shared random state,
so any number of DataLoader workers (each holding a copy of the dataset) gives the same samples. Call
``set_epoch(e)`` before iterating an epoch (with ``persistent_workers=False``, the default, workers pick the
new epoch up when the next epoch's iterator is made).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from terrain_core.labels import NUM_CLASSES, labels_from_rgb
from training.data.files import GRAY, RGB, RGBA, DataFileError, DatasetError, read_image, read_png_header

SUFFIXES = {"terrain": "_t.png", "height": "_h.png", "labels": "_i2.png"}
ALBEDO_SUFFIX = "_albedo.png"


def list_names(root: str | Path) -> list[str]:
    """Map names in ``root``: every NAME with at least one of the three files (partners checked later)."""
    root = Path(root)
    names = set()
    for suffix in SUFFIXES.values():
        names.update(p.name[: -len(suffix)] for p in root.glob(f"*{suffix}"))
    return sorted(n for n in names if n)


class TerrainDataset(Dataset):
    """Random crops of (terrain, height, labels[, albedo]) triplets; see the module docstring.

    ``crop``: side of the square crop in pixels (None = whole maps, which must then share one size).
    ``names``: the maps to use (None = every map in ``root``). ``skip_bad``: leave out maps with missing
    partners, wrong sizes or 8-bit heights (and, at load time, corrupt files) with a warning instead of
    raising. ``albedo``: include ``NAME_albedo.png`` as ``albedo`` (None = when every map has one).
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None = 256,
        seed: int = 0,
        names: list[str] | None = None,
        skip_bad: bool = False,
        albedo: bool | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        if crop is not None and (int(crop) != crop or crop < 1):
            raise DatasetError(f"crop must be a positive integer or None, got {crop!r}")
        self.crop = None if crop is None else int(crop)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = bool(skip_bad)
        wanted = list_names(self.root) if names is None else [str(n) for n in names]
        if not wanted:
            raise DatasetError(
                f"{self.root} holds no maps (NAME_t.png + NAME_h.png + NAME_i2.png); "
                "build one with python -m training.build_dataset"
            )
        self.names: list[str] = []
        self.sizes: list[tuple[int, int]] = []  # (H, W) per kept map
        self.skipped: dict[str, str] = {}
        for n in wanted:
            try:
                self.sizes.append(self._check(n))
                self.names.append(n)
            except DataFileError as e:
                if not self.skip_bad:
                    raise
                self.skipped[n] = str(e)
                warnings.warn(f"skipping map {n}: {e}", stacklevel=2)
        if not self.names:
            raise DatasetError(f"no usable maps left in {self.root} ({len(self.skipped)} skipped)")
        if self.crop is None and len(set(self.sizes)) > 1:
            raise DatasetError(
                f"maps in {self.root} differ in size ({sorted(set(self.sizes))[:3]}...) and crop=None; "
                "give a crop size so that a batch has one shape"
            )
        has_alb = [(self.root / f"{n}{ALBEDO_SUFFIX}").is_file() for n in self.names]
        self.albedo = all(has_alb) if albedo is None else bool(albedo)
        if self.albedo and not all(has_alb):
            missing = self.names[has_alb.index(False)]
            raise DatasetError(f"albedo=True but {self.root / (missing + ALBEDO_SUFFIX)} is missing")

    # ------------------------------------------------------------------------------------------ checks
    def _path(self, name: str, kind: str) -> Path:
        return self.root / f"{name}{SUFFIXES[kind] if kind in SUFFIXES else ALBEDO_SUFFIX}"

    def _check(self, name: str) -> tuple[int, int]:
        """Header-only checks of one map's files; returns its (H, W)."""
        heads = {}
        for kind in SUFFIXES:
            p = self._path(name, kind)
            if not p.is_file():
                present = [str(self._path(name, k).name) for k in SUFFIXES if self._path(name, k).is_file()]
                raise DatasetError(
                    f"{p} is missing (its partners {', '.join(present) or 'none'} exist); every map needs "
                    "NAME_t.png, NAME_h.png and NAME_i2.png"
                )
            heads[kind] = read_png_header(p, DatasetError)
        h = heads["height"]
        if h.color_type != GRAY or h.bit_depth != 16:
            kind = "grayscale" if h.color_type == GRAY else f"colour-type-{h.color_type}"
            raise DatasetError(
                f"{self._path(name, 'height')} is a {h.bit_depth}-bit {kind} PNG; heights must be "
                "16-bit grayscale (uint16, sea floor..peaks over 0..65535). Convert 8-bit heights with "
                "python -m training.build_dataset --source maps, which rescales them"
            )
        for kind in ("terrain", "labels"):
            hd = heads[kind]
            if hd.color_type not in (RGB, RGBA) or hd.bit_depth != 8:
                raise DatasetError(
                    f"{self._path(name, kind)} must be an 8-bit RGB(A) PNG, found bit depth {hd.bit_depth}, "
                    f"colour type {hd.color_type}"
                )
        size = (h.height, h.width)
        for kind in ("terrain", "labels"):
            hd = heads[kind]
            if (hd.height, hd.width) != size:
                raise DatasetError(
                    f"{self._path(name, kind)} is {hd.width}x{hd.height} but "
                    f"{self._path(name, 'height').name} is {h.width}x{h.height}; the three maps must match"
                )
        if self.crop is not None and (size[0] < self.crop or size[1] < self.crop):
            raise DatasetError(
                f"{self._path(name, 'terrain')} is {size[1]}x{size[0]}, smaller than the crop {self.crop}"
            )
        return size

    # ---------------------------------------------------------------------------------------- sampling
    def set_epoch(self, epoch: int) -> None:
        """Crops of the next pass depend on ``epoch`` (same seed + epoch + index = same crop)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.names)

    def crop_box(self, index: int) -> tuple[int, int, int, int]:
        """(y, x, h, w) of item ``index``'s crop this epoch: a function of (seed, epoch, index) only."""
        H, W = self.sizes[index]
        if self.crop is None:
            return 0, 0, H, W
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch & 0xFFFFFFFF, index])
        y = int(rng.integers(0, H - self.crop + 1))
        x = int(rng.integers(0, W - self.crop + 1))
        return y, x, self.crop, self.crop

    def load(self, index: int) -> dict:
        """Item ``index`` (raises DataFileError naming the file on a corrupt PNG)."""
        name = self.names[index]
        y, x, h, w = self.crop_box(index)
        sl = (slice(y, y + h), slice(x, x + w))
        ter = read_image(self._path(name, "terrain"), DatasetError)
        hgt = read_image(self._path(name, "height"), DatasetError)
        seg = read_image(self._path(name, "labels"), DatasetError)
        if hgt.dtype != np.uint16 or hgt.ndim != 2:
            raise DatasetError(f"{self._path(name, 'height')} did not decode as 16-bit grayscale")
        # Crop before converting: the nearest-colour search is the costly part.
        ter = ter[sl][..., :3].astype(np.float32)  # [h, w, 3]
        hgt = hgt[sl].astype(np.float32)  # [h, w]
        lab = labels_from_rgb(seg[sl][..., :3], max_mean_distance=None).astype(np.int64)  # [h, w]
        item = {
            "terrain": torch.from_numpy(
                np.ascontiguousarray(ter.transpose(2, 0, 1)) / 127.5 - 1.0
            ),  # [3,h,w]
            "height": torch.from_numpy(hgt / 32767.5 - 1.0)[None],  # [1, h, w]
            "labels": torch.from_numpy(lab),  # [h, w]
            "name": name,
        }
        item["onehot"] = torch.nn.functional.one_hot(item["labels"], NUM_CLASSES).permute(2, 0, 1).float()
        if self.albedo:
            alb = read_image(self._path(name, "albedo"), DatasetError)
            if alb.shape[:2] != self.sizes[index]:
                raise DatasetError(f"{self._path(name, 'albedo')} is not the size of its terrain map")
            alb = alb[sl][..., :3].astype(np.float32)
            item["albedo"] = torch.from_numpy(np.ascontiguousarray(alb.transpose(2, 0, 1) / 127.5 - 1.0))
        return item

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if not self.skip_bad:
            return self.load(index)
        # Corrupt files only show when decoded: with skip_bad, fall through to the next map (deterministic)
        # rather than failing a long run; every skip is warned about once per process.
        for k in range(len(self)):
            j = (index + k) % len(self)
            try:
                return self.load(j)
            except DataFileError as e:
                if self.names[j] not in self.skipped:
                    self.skipped[self.names[j]] = str(e)
                    warnings.warn(f"skipping map {self.names[j]}: {e}", stacklevel=2)
        first = next(iter(self.skipped.values()))
        raise DatasetError(f"every map in {self.root} failed to load; first error: {first}")
