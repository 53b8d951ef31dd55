"""The hand-written raster writers read back by the tools users open them with: Pillow for PNG, rasterio
(GDAL) for the GeoTIFF, Blender for the EXR, numpy for raw16; and the block size never changes a file."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import exr_channels
from PIL import Image

from terrain_core import rasterfiles as R
from terrain_core.outputs import plus_one_resample

rng = np.random.default_rng(7)


def terrain(h: int = 61, w: int = 83) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (400.0 * np.sin(x / 9.0) * np.cos(y / 7.0) + 0.1 * x * y - 123.25).astype(np.float32)


@pytest.mark.parametrize(
    "shape,dtype",
    [((37, 53, 3), np.uint8), ((37, 53, 4), np.uint8), ((37, 53), np.uint8), ((37, 53), np.uint16)],
)
def test_png_round_trips_exactly(tmp_path, shape, dtype, monkeypatch):
    monkeypatch.setattr(R, "BLOCK_PIXELS", 53 * 4 * 5)  # several blocks and IDAT chunks
    a = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    R.write_png(tmp_path / "a.png", R.array_rows(a))
    with Image.open(tmp_path / "a.png") as im:
        b = np.array(im)
    assert b.shape == a.shape
    np.testing.assert_array_equal(b.astype(dtype), a)


def test_png_refuses_what_it_cannot_encode(tmp_path):
    with pytest.raises(ValueError, match="uint8, or uint16 grey"):
        R.write_png(tmp_path / "x.png", R.array_rows(np.zeros((4, 4, 3), np.uint16)))
    with pytest.raises(ValueError, match="1-4 channels"):
        R.write_png(tmp_path / "y.png", R.array_rows(np.zeros((4, 4, 5), np.uint8)))


def test_geotiff_has_the_cell_size_and_origin_and_no_crs(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    h = terrain()
    p = R.write_geotiff(tmp_path / "h.tif", R.array_rows(h), cell_size=(30.0, 12.5), origin=(-1245.0, 381.25))
    with rasterio.open(p) as ds:
        assert ds.res == (30.0, 12.5) and ds.crs is None
        assert ds.count == 1 and ds.dtypes == ("float32",) and (ds.width, ds.height) == (83, 61)
        assert tuple(ds.bounds) == pytest.approx((-1245.0, 381.25 - 61 * 12.5, -1245.0 + 83 * 30.0, 381.25))
        assert ds.transform.a == 30.0 and ds.transform.e == -12.5  # rows go south
        np.testing.assert_array_equal(ds.read(1), h)
    with Image.open(p) as im:  # Pillow (libtiff) decodes the float predictor too
        np.testing.assert_array_equal(np.array(im), h)


def test_geotiff_refuses_nan_and_bad_cells(tmp_path):
    h = terrain()
    h[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        R.write_geotiff(tmp_path / "a.tif", R.array_rows(h), cell_size=(1, 1), origin=(0, 0))
    with pytest.raises(ValueError, match="positive"):
        R.write_geotiff(tmp_path / "b.tif", R.array_rows(terrain()), cell_size=(0, 1), origin=(0, 0))


@pytest.mark.blender
def test_exr_has_one_channel_and_blender_reads_the_heights(tmp_path):
    bpy = pytest.importorskip("bpy")
    h = terrain()
    h[:20] += rng.normal(0, 50, (20, 83)).astype(np.float32)  # noise: the first block is stored raw
    p = R.write_exr(tmp_path / "height.exr", R.array_rows(h))
    assert exr_channels(p) == ["Y"]
    img = bpy.data.images.load(str(p))
    try:
        assert tuple(img.size) == (83, 61) and img.is_float
        px = np.empty(83 * 61 * 4, np.float32)
        img.pixels.foreach_get(px)
        px = px.reshape(61, 83, 4)[::-1]  # Blender's rows start at the bottom
        np.testing.assert_array_equal(px[..., 0], h)
        np.testing.assert_array_equal(px[..., 2], h)  # grey: Y shows in every colour channel
    finally:
        bpy.data.images.remove(img)


def test_raw16_round_trips_bottom_up(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "BLOCK_PIXELS", 83 * 7)
    a = rng.integers(0, 65535, (61, 83), endpoint=True).astype(np.uint16)
    R.write_raw16(tmp_path / "a.raw", R.array_rows(a), bottom_up=True)
    R.write_raw16(tmp_path / "b.raw", R.array_rows(a))
    assert (tmp_path / "a.raw").stat().st_size == 61 * 83 * 2
    back = np.fromfile(tmp_path / "a.raw", dtype="<u2").reshape(61, 83)
    np.testing.assert_array_equal(back[::-1], a)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "b.raw", dtype="<u2").reshape(61, 83), a)


def test_corner_rows_match_plus_one_and_keep_the_edges():
    h = terrain(20, 30)
    np.testing.assert_allclose(R.corner_rows(h, 21, 31).block(0, 21), plus_one_resample(h), atol=1e-4)
    up = R.corner_rows(h, 39, 59)
    whole = up.block(0, 39)
    parts = np.concatenate([b for _, b in up.blocks(5)])  # blocks read only the input rows they need
    np.testing.assert_array_equal(parts, whole)
    assert whole[0, 0] == h[0, 0] and whole[-1, -1] == h[-1, -1]
    flat = R.corner_rows(np.full((20, 30), 7.5, np.float32), 9, 17).block(0, 9)
    np.testing.assert_allclose(flat, 7.5)


def test_block_size_does_not_change_any_file(tmp_path, monkeypatch):
    h = terrain()
    u16 = (np.abs(h) * 10).astype(np.uint16)

    def write_all(d):
        d.mkdir()
        R.write_geotiff(d / "h.tif", R.array_rows(h), cell_size=(1, 1), origin=(0, 0))
        R.write_exr(d / "h.exr", R.array_rows(h))
        R.write_png(d / "h.png", R.array_rows(u16))
        return {p.name: p.read_bytes() for p in d.iterdir()}

    big = write_all(tmp_path / "big")
    monkeypatch.setattr(R, "BLOCK_PIXELS", 83 * 2)
    small = write_all(tmp_path / "small")
    assert small["h.tif"] != big["h.tif"]  # the smaller blocks took effect (TIFF strips follow them)
    with Image.open(tmp_path / "small" / "h.png") as a, Image.open(tmp_path / "big" / "h.png") as b:
        np.testing.assert_array_equal(np.array(a), np.array(b))
    with Image.open(tmp_path / "small" / "h.tif") as a:
        np.testing.assert_array_equal(np.array(a), h)
