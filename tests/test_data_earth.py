"""R data reader (hand-made XDR files), asset checks, Earth processing helpers, and the real Earth data when
the cache holds it (never downloads: skipped with the reason otherwise)."""

from __future__ import annotations

import bz2
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data import earth
from training.data.earth import (
    Asset,
    EarthDataError,
    apply_curve,
    ensure_asset,
    lake_surfaces,
    pava,
    terracing,
)
from training.data.rdata import RDataError, read_rdata


# ------------------------------------------------------------------------------------- R data files
def i32(v):
    return struct.pack(">i", v)


def charsxp(s: str) -> bytes:
    b = s.encode()
    return i32(9 | (4 << 12)) + i32(len(b)) + b  # CHARSXP, UTF-8 flag bit in the levels


def symbol(s: str) -> bytes:
    return i32(1) + charsxp(s)


def pairlist_attr(items: list[tuple[bytes, bytes]]) -> bytes:
    """Attribute pairlist: (tag bytes, value bytes) cells with tags, NILVALUE at the end."""
    out = b""
    for tag, val in items:
        out += i32(2 | (1 << 10)) + tag + val
    return out + i32(254)


def real_vec(vals, attrs: bytes | None = None) -> bytes:
    flags = 14 | ((1 << 9) if attrs else 0)
    body = i32(flags) + i32(len(vals)) + b"".join(struct.pack(">d", v) for v in vals)
    return body + (attrs or b"")


def int_vec(vals) -> bytes:
    return i32(13) + i32(len(vals)) + b"".join(i32(v) for v in vals)


def rda(objects: bytes, version=3) -> bytes:
    head = b"RDX%d\nX\n" % version + i32(version) + i32(0x040201) + i32(0x030500)
    if version == 3:
        head += i32(5) + b"UTF-8"
    return head + objects


def test_reads_a_named_list_with_a_matrix(tmp_path):
    # elev <- list(x = c(1, 2, 3), z = matrix(1:6 as doubles, 3, 2), y = "label"), NA in the matrix.
    m = real_vec([1.0, 2.0, 3.0, 4.0, float("nan"), 6.0], pairlist_attr([(symbol("dim"), int_vec([3, 2]))]))
    strs = i32(16) + i32(1) + charsxp("label")
    names = i32(16) + i32(3) + charsxp("x") + charsxp("z") + charsxp("y")
    lst = i32(19 | (1 << 9)) + i32(3) + real_vec([1.0, 2.0, 3.0]) + m + strs
    lst += pairlist_attr([(symbol("names"), names)])
    top = i32(2 | (1 << 10)) + symbol("elev") + lst + i32(254)
    p = tmp_path / "e.rda"
    p.write_bytes(bz2.compress(rda(top)))
    d = read_rdata(p)["elev"]
    assert d["x"].tolist() == [1.0, 2.0, 3.0] and d["y"] == ["label"]
    z = d["z"]
    assert z.shape == (3, 2) and z[0, 1] == 4.0 and z[2, 0] == 3.0 and np.isnan(z[1, 1])  # column-major
    # Version 2, gzip, and a reference to an already-read symbol (REFSXP) resolve the same way.
    top2 = i32(2 | (1 << 10)) + symbol("a") + int_vec([7]) + i32(2 | (1 << 10)) + i32(255 | (1 << 8))
    top2 += int_vec([8]) + i32(254)
    p.write_bytes(gzip.compress(rda(top2, version=2)))
    # The second cell's tag is a reference to symbol 1 ("a"), so its value lands under "a" too.
    d2 = read_rdata(p)
    assert list(d2) == ["a"] and d2["a"].tolist() == [8]


def test_rdata_errors_name_the_problem(tmp_path):
    p = tmp_path / "x.rda"
    p.write_bytes(b"not R at all")
    with pytest.raises(RDataError, match="not an R data file"):
        read_rdata(p)
    p.write_bytes(gzip.compress(rda(i32(2 | (1 << 10)) + symbol("f") + i32(3))))  # a closure
    with pytest.raises(RDataError, match="does not read"):
        read_rdata(p)
    p.write_bytes(rda(i32(2 | (1 << 10)) + symbol("v") + i32(14) + i32(100) + b"\0" * 16))
    with pytest.raises(RDataError, match="truncated"):
        read_rdata(p)


# ------------------------------------------------------------------------------------------- helpers
def test_ensure_asset_checks_size_and_checksum_without_downloading(tmp_path):
    data = b"hello terrain"
    import hashlib

    a = Asset("x", "x.bin", len(data), hashlib.sha256(data).hexdigest(), ("false",), "u", "l", "r")
    (tmp_path / "x.bin").write_bytes(data)
    assert ensure_asset(a, tmp_path, download=False) == tmp_path / "x.bin"
    (tmp_path / "x.bin").write_bytes(b"hello terrairn")  # same size, other bytes
    with pytest.raises(EarthDataError, match="not in the cache"):
        ensure_asset(a, tmp_path, download=False, quiet=True)
    assert not (tmp_path / "x.bin").exists()  # a damaged file is never kept


def test_fetch_failure_says_offline(tmp_path):
    a = Asset("x", "x.bin", 1, "0" * 64, ("false",), "https://example.org/x", "l", "r")
    with pytest.raises(EarthDataError, match="Offline"):
        ensure_asset(a, tmp_path, download=True, quiet=True)


def test_pava_and_curve_are_monotonic():
    y = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 4.0])
    out = pava(y, np.ones(6))
    assert (np.diff(out) >= 0).all() and out.sum() == pytest.approx(y.sum())
    assert out.tolist() == pytest.approx([1, 7 / 3, 7 / 3, 7 / 3, 4.5, 4.5])
    c = apply_curve(np.array([0.0, 5.0, 10.0, 12.0]), [0, 10], [0, 100], 20.0)
    assert c.tolist() == [0, 50, 100, 140]


def test_terracing_measure_sees_steps():
    x = np.linspace(0, 100, 200)[None].repeat(50, 0)
    land = np.ones_like(x, bool)
    stepped = np.floor(x / 10) * 10
    assert terracing(stepped, land)["flat_share"] > 0.8
    assert terracing(x, land)["flat_share"] == 0.0


def test_lakes_become_level_surfaces():
    h = np.full((40, 40), 300.0)
    h[:, :5] = 0.0
    water = np.zeros((40, 40), bool)
    water[:, :5] = True  # ocean strip
    water[15:25, 15:25] = True  # a lake, shore at 300 m
    h[15:25, 15:25] = 0.0
    out = lake_surfaces(h, water, ocean=np.zeros_like(water) | (np.arange(40)[None] < 5))
    assert (out[15:25, 15:25] == 300.0).all() and (out[:, :5] == 0).all()


# ---------------------------------------------------------------------------------------- real Earth
def find_cache() -> Path | None:
    for p in (os.environ.get("TERRAIN_GAN_CACHE"), Path.home() / ".cache" / "terrain-gan"):
        if p and all((Path(p) / "downloads" / a.filename).is_file() for a in earth.ASSETS):
            return Path(p)
    return None


CACHE = find_cache()
needs_cache = pytest.mark.skipif(
    CACHE is None,
    reason="Earth downloads not in the cache (~/.cache/terrain-gan/downloads); build once with "
    "python -m training.build_dataset --source earth (tests never download)",
)


@needs_cache
def test_real_earth_heights(monkeypatch):
    monkeypatch.setenv("TERRAIN_GAN_CACHE", str(CACHE))
    if not (CACHE / "earth" / f"height_m_v{earth.PROCESS_VERSION}.npy").is_file():
        pytest.skip("the processed Earth arrays are not cached yet (first --source earth build makes them)")
    terrain, height, rep = earth.process_earth(quiet=True, download=False)
    assert terrain.shape == (5400, 10800, 3) and height.shape == (5400, 10800)
    water = earth.water_mask(terrain)
    ocean = water & (height == 0)
    assert ocean.mean() > 0.5 and (height[~water] >= 1.0).all()
    cal = rep["calibration"]
    assert (np.diff(cal["knots_m"]) >= 0).all() and cal["fit"]["r2"] > 0.95 and cal["fit"]["rmse_m"] < 150
    assert rep["terracing_after"]["flat_share"] < 0.5 * rep["terracing_before"]["flat_share"]

    # Known places, in metres: the Tibetan plateau is high, the Amazon basin low, the Alps in between.
    def at(lat, lon):
        return float(height[int((90 - lat) * 30), int((lon + 180) * 30)])

    assert at(33.0, 88.0) > 4000 and at(-3.0, -60.0) < 300 and 1000 < at(46.5, 9.5) < 4500


@needs_cache
def test_real_earth_crops(tmp_path, monkeypatch):
    monkeypatch.setenv("TERRAIN_GAN_CACHE", str(CACHE))
    from training.data.crops import CropBox, extract, source_columns

    world, info = earth.load_earth(quiet=True, download=False)
    assert info["source"] == "earth" and "public domain" in info["provenance"].lower()
    # The Alps at 46 N: a 128 px crop reads 128 / cos(46 deg) source columns.
    cols = source_columns(128, 46.0, world.dlat, world.dlon)
    assert cols == pytest.approx(128 / np.cos(np.radians(46.0)))
    box = CropBox(int((90 - 46) * 30) - 64, (8.0 + 180) * 30 - cols / 2, cols, 128, 46.0, 8.0)
    c = extract(world, box)
    assert c["terrain"].shape == (128, 128, 3) and c["height_m"].max() > 2000
