"""Reading class maps and images from real files: every kind of bad file gets its own clear message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from terrain_core import imageio as IO
from terrain_core import outputs as E
from terrain_core.labels import PALETTE, LabelMapError, rgb_from_labels


def sample_labels(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x // 5 + y // 7) % 7).astype(np.uint8)


def save(arr: np.ndarray, path, mode: str | None = None, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


def test_rgb_and_rgba_maps_read_as_their_classes(tmp_path):
    lab = sample_labels()
    rgb = rgb_from_labels(lab)
    assert np.array_equal(IO.read_label_map(save(rgb, tmp_path / "m.png")), lab)
    rgba = np.concatenate([rgb, np.random.default_rng(0).integers(0, 256, lab.shape + (1,), np.uint8)], -1)
    assert np.array_equal(IO.read_label_map(save(rgba, tmp_path / "a.png")), lab)  # alpha ignored


def test_palette_image_reads_through_its_colours(tmp_path):
    lab = sample_labels()
    im = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab[:, ::-1].copy().tobytes())  # indices ...
    # ... with a palette in reverse class order, so reading indices as ids would be wrong.
    im.putpalette(PALETTE[::-1].ravel().tolist())
    im.save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P"
    expected = 6 - lab[:, ::-1]
    assert np.array_equal(IO.read_label_map(tmp_path / "p.png"), expected)


def test_grayscale_class_id_maps_8_and_16_bit_and_with_alpha(tmp_path):
    lab = sample_labels()
    assert np.array_equal(IO.read_label_map(save(lab, tmp_path / "ids8.png")), lab)
    assert np.array_equal(IO.read_label_map(save(lab.astype(np.uint16), tmp_path / "ids16.png")), lab)
    la = Image.merge("LA", (Image.fromarray(lab), Image.fromarray(np.full_like(lab, 200))))
    la.save(tmp_path / "la.png")
    with Image.open(tmp_path / "la.png") as check:
        assert check.mode == "LA"
    assert np.array_equal(IO.read_label_map(tmp_path / "la.png"), lab)


def test_grey_images_go_through_the_palette(tmp_path):
    grey = np.full((16, 16), 150, np.uint8)  # the mountains colour is (150, 150, 150)
    assert (IO.read_label_map(save(grey, tmp_path / "g8.png")) == 5).all()
    g16 = np.full((16, 16), 150 * 257, np.uint16)
    assert (IO.read_label_map(save(g16, tmp_path / "g16.png")) == 5).all()
    la = Image.merge("LA", (Image.fromarray(grey), Image.fromarray(grey)))
    la.save(tmp_path / "gla.png")
    assert (IO.read_label_map(tmp_path / "gla.png") == 5).all()


def test_lossy_jpeg_of_a_map_still_reads(tmp_path):
    lab = np.repeat(np.repeat(sample_labels(8, 8), 8, 0), 8, 1)  # 64x64 in 8-pixel blocks
    save(rgb_from_labels(lab), tmp_path / "m.jpg", quality=85)
    got = IO.read_label_map(tmp_path / "m.jpg")
    assert (got == lab).mean() > 0.9


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing", "no such file"),
        ("folder", "is a folder"),
        ("empty", r"empty \(0 bytes\)"),
        ("text", "not an image file"),
        ("truncated", "corrupt or truncated"),
        ("tiny", r"too small \(1x1 pixels\)"),
        ("thin", r"too small \(64x4 pixels\)"),
        ("huge", r"too large \(20000x8 pixels\)"),
        ("noise", "far from the terrain palette"),
    ],
)
def test_bad_files_get_a_specific_message(tmp_path, case, pattern):
    p = tmp_path / "map.png"
    if case == "folder":
        p.mkdir()
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("this is not a PNG\n")
    elif case == "truncated":
        save(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), p)
        p.write_bytes(p.read_bytes()[:2000])
    elif case == "tiny":
        save(PALETTE[:1][None], p)
    elif case == "thin":
        save(np.full((4, 64, 3), 150, np.uint8), p)
    elif case == "huge":
        save(np.full((8, 20000, 3), 150, np.uint8), p)
    elif case == "noise":
        save(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8), p)
    with pytest.raises(IO.MapReadError, match=pattern) as ei:
        IO.read_label_map(p)
    assert str(p) in str(ei.value)  # every message names the file
    assert isinstance(ei.value, LabelMapError)


def test_read_rgb_and_height_helpers(tmp_path):
    lab = sample_labels()
    im = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    im.putpalette(PALETTE.ravel().tolist())
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(IO.read_rgb(tmp_path / "p.png"), rgb_from_labels(lab))
    h = np.linspace(-1, 1, 40, dtype=np.float32).reshape(5, 8)
    E.write_height_png16(tmp_path / "h.png", h)
    np.testing.assert_allclose(IO.read_height16(tmp_path / "h.png"), h, atol=2e-5)
    raw = IO.read_height16(tmp_path / "h.png", normalised=False)
    assert raw.min() == 0 and raw.max() == 65535
    E.write_height_tiff(tmp_path / "h.tif", h * 500)
    np.testing.assert_array_equal(IO.read_height_tiff(tmp_path / "h.tif"), h * 500)
    save(np.zeros((5, 8), np.uint8), tmp_path / "h8.png")
    with pytest.raises(IO.MapReadError, match="16-bit"):
        IO.read_height16(tmp_path / "h8.png")


def test_16_bit_rgb_png_reads_as_its_classes(tmp_path):
    # Pillow cannot write 48-bit PNGs; write one by hand (a painting app's 16-bit export).
    import struct
    import zlib

    lab = sample_labels(16, 20)
    rgb16 = PALETTE[lab].astype(">u2") * 257
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 20, 16, 16, 2, 0, 0, 0)  # 16 bits per channel, RGB
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    (tmp_path / "m16.png").write_bytes(png)
    assert np.array_equal(IO.read_label_map(tmp_path / "m16.png"), lab)
