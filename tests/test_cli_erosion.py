"""``python -m terrain_core generate --erosion LEVEL`` with the shipped model on a real example map."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from terrain_core import cli
from terrain_core.imageio import read_label_map
from terrain_core.labels import resize_nearest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "examples" / "island.png"
MASKS = ("flow.png", "deposition.png", "wear.png")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("erosion")
    common = (
        "generate",
        "--labels",
        MAP,
        "--size",
        "160",
        "--seed",
        "4",
        "--format",
        "height16,heightf,splat,meta",
    )
    rc_off, _, err_off = run(*common, "--out", base / "off")
    rc_on, out_on, err_on = run(*common, "--out", base / "on", "--erosion", "medium")
    assert rc_off == 0, err_off
    assert rc_on == 0, err_on
    return base / "off", base / "on", out_on


def _tif(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im, dtype=np.float32)


def test_erosion_writes_masks_and_replaces_the_height(runs):
    off, on, out = runs
    assert not any((off / m).exists() for m in MASKS)
    for m in MASKS:
        with Image.open(on / m) as im:
            a = np.asarray(im)
        assert a.shape == (160, 160) and a.dtype == np.uint16 and a.max() == 65535
    h_off, h_on = _tif(off / "height.tif"), _tif(on / "height.tif")
    assert np.abs(h_on - h_off).max() > 5.0  # the relief changed
    with Image.open(on / "height.png") as im:
        h16 = np.asarray(im).astype(np.float64)
    meta = json.loads((on / "meta.json").read_text())
    lo, hi = meta["height_range_m"]
    h16_m = lo + h16 / 65535.0 * (hi - lo)
    assert np.abs(h16_m - h_on).max() < (hi - lo) / 65535.0 + 1e-3  # height.png carries the eroded height
    e = meta["erosion"]
    assert e["level"] == "medium" and e["settings"]["steps"] > 0 and e["seed"] == 4
    b = e["balance_m3"]
    assert abs(b["eroded_m3"] - b["deposited_m3"] - b["outflow_m3"]) <= 0.01 * b["eroded_m3"]
    assert set(e["masks"]) == set(MASKS) and set(MASKS) <= set(meta["files"])
    assert "erosion: medium" in out


def test_water_height_is_unchanged_by_erosion(runs):
    off, on, _ = runs
    meta = json.loads((on / "meta.json").read_text())
    lab = resize_nearest(read_label_map(MAP), 160, 160)
    assert meta["erosion"]["cell_size_m"] == 30.0
    h_off, h_on = _tif(off / "height.tif"), _tif(on / "height.tif")
    assert (lab == 0).sum() > 1000
    assert np.array_equal(h_on[lab == 0], h_off[lab == 0])


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (("--erosion", "extreme"), "--erosion: invalid choice"),
        (("--erosion-steps", "3"), "--erosion-steps needs --erosion"),
        (("--erosion", "light", "--erosion-steps", "-1"), "--erosion-steps must be in 0..1000"),
        (("--erosion", "light", "--erosion-steps", "x"), "--erosion-steps must be an integer"),
    ],
)
def test_bad_erosion_settings_exit_2_with_one_line(tmp_path, extra, pattern):
    out = tmp_path / "out"
    rc, _, err = run("generate", "--labels", MAP, "--size", "128", "--out", out, *extra)
    assert rc == 2
    assert pattern in err and err.count("\n") == 1
    assert not out.exists()


def test_erosion_with_the_default_formats_writes_its_masks(tmp_path):
    # Without --format the default set (splat maps included) is written, and the masks go with it.
    out = tmp_path / "out"
    rc, _, err = run("generate", "--labels", MAP, "--size", "64", "--out", out, "--erosion", "light",
                     "--erosion-steps", "1", "-q")  # fmt: skip
    assert rc == 0, err
    assert all((out / m).is_file() for m in MASKS)
    assert json.loads((out / "meta.json").read_text())["erosion"]["masks"].keys() == set(MASKS)
