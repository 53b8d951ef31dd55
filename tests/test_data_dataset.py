"""TerrainDataset: normalisation, nearest-colour labels, shared crops, determinism, workers, error cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from terrain_core.labels import PALETTE
from training.data.dataset import DatasetError, TerrainDataset
from training.manifest import split_names


def write_map(root, name, h=48, w=64, seed=0, albedo=False):
    rng = np.random.default_rng(seed)
    # Terrain and height carry their own coordinates so a test can see which crop was taken.
    yy, xx = np.mgrid[0:h, 0:w]
    ter = np.stack([yy * 4 % 256, xx * 3 % 256, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    hgt = (yy * w + xx).astype(np.uint16) * 7
    # Labels: palette colours with noise (+-12 per channel), as a resampled or JPEG'd label map would have.
    ids = rng.integers(0, 7, (h, w))
    seg = np.clip(PALETTE[ids].astype(int) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(ter).save(root / f"{name}_t.png")
    Image.fromarray(hgt).save(root / f"{name}_h.png")
    Image.fromarray(seg).save(root / f"{name}_i2.png")
    if albedo:
        Image.fromarray(ter[..., ::-1].copy()).save(root / f"{name}_albedo.png")
    return ter, hgt, seg


def nearest_brute(seg):
    d = ((seg[:, :, None, :].astype(float) - PALETTE[None, None].astype(float)) ** 2).sum(-1)
    return d.argmin(-1)


def test_item_values_match_files(tmp_path):
    ter, hgt, seg = write_map(tmp_path, "a", seed=1)
    (tmp_path / "a_notes.txt").write_text("extra files are ignored")
    ds = TerrainDataset(tmp_path, crop=32, seed=3)
    item = ds[0]
    y, x, h, w = ds.crop_box(0)
    sl = (slice(y, y + h), slice(x, x + w))
    assert item["name"] == "a" and "albedo" not in item
    assert item["terrain"].shape == (3, 32, 32) and item["terrain"].dtype == torch.float32
    assert item["height"].shape == (1, 32, 32) and item["labels"].dtype == torch.int64
    np.testing.assert_allclose(item["terrain"].numpy(), ter[sl].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(item["height"][0].numpy(), hgt[sl] / 32767.5 - 1, atol=1e-6)
    # The labels are the original's nearest-palette-colour rule, pixel for pixel.
    np.testing.assert_array_equal(item["labels"].numpy(), nearest_brute(seg[sl]))
    assert torch.equal(item["onehot"].argmax(0), item["labels"])
    assert torch.all(item["onehot"].sum(0) == 1)


def test_crops_deterministic_and_epoch_dependent(tmp_path):
    for i in range(4):
        write_map(tmp_path, f"m{i}", h=80, w=90, seed=i)
    a, b = TerrainDataset(tmp_path, crop=24, seed=5), TerrainDataset(tmp_path, crop=24, seed=5)
    boxes = [a.crop_box(i) for i in range(4)]
    assert boxes == [b.crop_box(i) for i in range(4)]
    assert torch.equal(a[2]["terrain"], b[2]["terrain"])
    a.set_epoch(1)
    assert [a.crop_box(i) for i in range(4)] != boxes
    c = TerrainDataset(tmp_path, crop=24, seed=6)
    assert [c.crop_box(i) for i in range(4)] != boxes
    # Same crop window on all three maps: height encodes (row*w + col)*7, so its corner gives the box.
    y, x, _, _ = a.crop_box(1)
    it = a[1]
    assert round((float(it["height"][0, 0, 0]) + 1) * 32767.5) == (y * 90 + x) * 7


def test_workers_give_same_batches(tmp_path):
    for i in range(6):
        write_map(tmp_path, f"m{i}", seed=i)
    ds = TerrainDataset(tmp_path, crop=16, seed=2)
    ds.set_epoch(3)
    single = [b["terrain"] for b in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)]
    multi = [b["terrain"] for b in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)]
    assert all(torch.equal(s, m) for s, m in zip(single, multi, strict=True))


def test_albedo_included_when_present(tmp_path):
    ter, _, _ = write_map(tmp_path, "a", albedo=True)
    ds = TerrainDataset(tmp_path, crop=None)
    item = ds[0]
    np.testing.assert_allclose(
        item["albedo"].numpy(), ter[..., ::-1].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6
    )


def test_missing_partner_named(tmp_path):
    write_map(tmp_path, "a")
    write_map(tmp_path, "b")
    (tmp_path / "b_h.png").unlink()
    with pytest.raises(DatasetError, match="b_h.png is missing"):
        TerrainDataset(tmp_path, crop=16)
    with pytest.warns(UserWarning, match="b_h.png"):
        ds = TerrainDataset(tmp_path, crop=16, skip_bad=True)
    assert ds.names == ["a"]


def test_eight_bit_height_named(tmp_path):
    write_map(tmp_path, "a")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "a_h.png")
    with pytest.raises(DatasetError, match=r"a_h.png is a 8-bit grayscale.*16-bit"):
        TerrainDataset(tmp_path, crop=16)


def test_size_mismatch_named(tmp_path):
    write_map(tmp_path, "a")
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(tmp_path / "a_i2.png")
    with pytest.raises(DatasetError, match=r"a_i2.png is 64x40 but a_h.png is 64x48"):
        TerrainDataset(tmp_path, crop=16)


def test_crop_larger_than_map_named(tmp_path):
    write_map(tmp_path, "a")
    with pytest.raises(DatasetError, match=r"a_t.png is 64x48, smaller than the crop 256"):
        TerrainDataset(tmp_path, crop=256)


def test_corrupt_png_named_and_skippable(tmp_path):
    write_map(tmp_path, "a")
    write_map(tmp_path, "b", seed=1)
    data = (tmp_path / "a_t.png").read_bytes()
    (tmp_path / "a_t.png").write_bytes(data[: len(data) // 2])  # header intact, pixel data truncated
    ds = TerrainDataset(tmp_path, crop=16)
    with pytest.raises(DatasetError, match=r"a_t.png is corrupt"):
        ds[0]
    (tmp_path / "b_i2.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"b_i2.png is not a PNG"):
        TerrainDataset(tmp_path, crop=16)
    write_map(tmp_path, "b", seed=1)
    ds = TerrainDataset(tmp_path, crop=16, skip_bad=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        item = ds[0]
    assert item["name"] == "b" and any("a_t.png" in str(r.message) for r in rec)


def test_empty_folder_and_split_names(tmp_path):
    with pytest.raises(DatasetError, match="holds no maps"):
        TerrainDataset(tmp_path)
    assert split_names(tmp_path, "val") is None
    (tmp_path / "manifest.json").write_text('{"splits": {"train": ["a"], "val": ["b", "c"]}}')
    assert split_names(tmp_path, "val") == ["b", "c"]
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(DatasetError, match="manifest.json is not a valid manifest"):
        split_names(tmp_path, "val")
