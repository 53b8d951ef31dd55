"""The strict image reader: truncated or short data refused, header size checked before decoding, Pillow's
warnings kept inside; property tests on corrupted and truncated PNGs."""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
import pytest
from bad_images import huge_header_png, png_bytes, short_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from terrain_core import imageio as IO
from terrain_core.labels import PALETTE


def map_png_bytes(h: int, w: int, seed: int, interlace: bool = False) -> tuple[bytes, np.ndarray]:
    lab = np.random.default_rng(seed).integers(0, 7, (h, w)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(PALETTE[lab]).save(buf, format="PNG", interlace=int(interlace))
    return buf.getvalue(), lab


def test_a_png_whose_data_stops_early_is_refused_with_the_row_count(tmp_path):
    # The report's case: a 512-row header with 64 rows of data was read as 87% water, exit 0.
    p = short_png(tmp_path / "short.png", PALETTE[4], 64, 512, rows=64)
    with Image.open(p) as im:  # what Pillow alone does: pads the missing rows, no error
        im.load()
        assert im.size == (64, 512)
    with pytest.raises(IO.MapReadError, match="corrupt or truncated: it holds 64 of 512 rows"):
        IO.read_label_map(p)
    with pytest.raises(IO.MapReadError, match="truncated"):
        IO.read_rgb(p)


def test_size_limits_apply_before_decoding_and_without_pillow_warnings(tmp_path):
    p = huge_header_png(tmp_path / "huge.png", 20000, 20000)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        with pytest.raises(IO.MapReadError, match=r"too large \(20000x20000 pixels\)"):
            IO.read_label_map(p)
    assert time.perf_counter() - t0 < 5.0  # generous; the point is that 400 M pixels are never allocated


def test_header_sizes_of_common_formats(tmp_path):
    lab = np.zeros((13, 21), np.uint8)
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif")):
        p = tmp_path / f"m.{ext}"
        Image.fromarray(PALETTE[lab]).save(p, format=fmt)
        assert IO.header_size(p) == (fmt, 21, 13)
    Image.fromarray(PALETTE[lab]).save(tmp_path / "m.tif")
    assert IO.header_size(tmp_path / "m.tif") is None  # checked after opening, still before decoding


def test_pillow_leniency_is_switched_off_while_reading(tmp_path):
    from PIL import ImageFile

    data, _ = map_png_bytes(32, 32, 0)
    p = tmp_path / "m.jpg"
    Image.open(io.BytesIO(data)).save(p, format="JPEG")
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as some other library in the process might have set it
    try:
        with pytest.raises(IO.MapReadError, match="corrupt or truncated"):
            IO.read_label_map(p)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(8, 40),
    w=st.integers(8, 40),
    seed=st.integers(0, 1000),
    interlace=st.booleans(),
    cut=st.floats(0.0, 0.999),
)
def test_any_truncated_png_is_refused_and_the_whole_file_reads_back(tmp_path, h, w, seed, interlace, cut):
    data, lab = map_png_bytes(h, w, seed, interlace)
    p = tmp_path / "m.png"
    p.write_bytes(data)
    assert np.array_equal(IO.read_label_map(p), lab)
    p.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(IO.MapReadError):
        IO.read_label_map(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(8, 40), w=st.integers(8, 40), rows=st.integers(0, 39), extra=st.integers(1, 3))
def test_short_data_with_a_valid_stream_is_refused(tmp_path, h, w, rows, extra):
    rgb = PALETTE[np.random.default_rng(h * w).integers(0, 7, (h, w))]
    rows = min(rows, h - 1)
    p = tmp_path / "m.png"
    p.write_bytes(png_bytes(rgb, rows=rows))
    with pytest.raises(IO.MapReadError, match="truncated"):
        IO.read_label_map(p)
    # A header claiming more rows than the data holds is the same defect.
    p.write_bytes(png_bytes(rgb, header_hw=(h + extra, w)))
    with pytest.raises(IO.MapReadError):
        IO.read_label_map(p)


def test_a_damaged_chunk_type_is_named_on_one_line(tmp_path):
    data, _lab = map_png_bytes(24, 16, 0)
    b = bytearray(data)
    b[len(b) - 8] = ord("\n")  # IEND's type (the last 12 bytes: length, type, CRC) becomes "\nEND"
    p = tmp_path / "m.png"
    p.write_bytes(bytes(b))
    with pytest.raises(IO.MapReadError, match=r"its '\\nEND' chunk fails the checksum") as e:
        IO.read_label_map(p)
    assert "\n" not in str(e.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, 10**6), value=st.integers(0, 255), seed=st.integers(0, 20))
def test_a_corrupted_byte_gives_the_map_or_a_clean_error_never_anything_else(tmp_path, pos, value, seed):
    data, lab = map_png_bytes(24, 16, seed)
    b = bytearray(data)
    i = pos % len(b)
    if b[i] == value:
        value ^= 0xFF
    b[i] = value
    p = tmp_path / "m.png"
    p.write_bytes(bytes(b))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            got = IO.read_label_map(p)
        except IO.MapReadError as e:
            assert str(e).startswith(str(p)) and "\n" not in str(e)
            return
    # Read without complaint: only where the byte could not matter (a CRC, an ancillary chunk) or the
    # pixels still decode to a whole map of the declared size.
    assert got.shape == lab.shape and got.dtype == np.uint8


def test_zlib_stream_with_garbage_is_a_clean_error(tmp_path):
    rgb = PALETTE[np.zeros((10, 10), np.uint8)]
    data = bytearray(png_bytes(rgb))
    idat = data.index(b"IDAT") + 4
    data[idat + 2 : idat + 12] = b"\x00" * 10  # breaks the deflate data
    p = tmp_path / "m.png"
    p.write_bytes(bytes(data))
    with pytest.raises(IO.MapReadError):
        IO.read_label_map(p)
