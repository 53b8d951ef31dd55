"""OBJ + MTL parsed back, height PNG16/TIFF round trips, splats, hillshade, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from terrain_core import objmesh as M
from terrain_core import outputs as E
from terrain_core.labels import NUM_CLASSES
from terrain_core.result import TerrainResult

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers


def parse_obj(path: Path) -> dict:
    """A strict little OBJ reader: every line must be a known statement with the right arity."""
    out = {"v": [], "vt": [], "f": [], "s": [], "mtllib": [], "usemtl": [], "o": []}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tok = line.split()
        key, args = tok[0], tok[1:]
        if key == "v":
            assert len(args) == 3, f"line {n}: {line!r}"
            out["v"].append([float(a) for a in args])
        elif key == "vt":
            assert len(args) == 2, f"line {n}: {line!r}"
            out["vt"].append([float(a) for a in args])
        elif key == "f":
            assert len(args) == 3, f"line {n}: {line!r}"
            corners = []
            for a in args:
                vi, ti = a.split("/")
                corners.append((int(vi), int(ti)))
            out["f"].append(corners)
        elif key in ("s", "mtllib", "usemtl", "o"):
            assert len(args) == 1, f"line {n}: {line!r} (statement glued to the next one?)"
            out[key].append(args[0])
        else:
            raise AssertionError(f"line {n}: unknown statement {line!r}")
    out["v"] = np.array(out["v"])
    out["vt"] = np.array(out["vt"])
    out["f"] = np.array(out["f"])  # [F, 3 corners, (v, vt)]
    return out


def face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    p = v[f[:, :, 0] - 1]  # [F, 3, 3]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def make_result(h: int = 24, w: int = 40, seed: int = 0) -> TerrainResult:
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    for c in range(NUM_CLASSES):  # vertical bands of every class
        labels[:, c * w // NUM_CLASSES :] = c
    height = np.clip(np.cumsum(rng.normal(0, 0.05, (h, w)), 0), -1, 1).astype(np.float32)
    return TerrainResult(
        labels=labels,
        texture=rng.random((h, w, 3), dtype=np.float32),
        shaded=rng.random((h, w, 3), dtype=np.float32),
        height=height,
        height_range_m=(-100.0, 900.0),
        seed=seed,
        model="synthetic",
        timings={"network": 0.5},
    )


# ---------------------------------------------------------------------------------------------- OBJ


@pytest.mark.parametrize("up_axis", ["y", "z"])
def test_obj_parses_back_with_exact_counts_and_geometry(tmp_path, up_axis):
    rng = np.random.default_rng(1)
    hm = (rng.normal(size=(7, 11)) * 300).astype(np.float32)
    hm[0, 0], hm[0, 1], hm[1, 0] = -0.00004, 123456.78904, -0.5  # sign of ~0, 6-digit, "-0.5"
    info = M.write_obj(tmp_path / "t.obj", hm, 2.5, up_axis=up_axis)
    obj = parse_obj(tmp_path / "t.obj")
    assert (len(obj["v"]), len(obj["vt"]), len(obj["f"])) == (77, 77, 2 * 6 * 10)
    assert info["vertices"] == 77 and info["faces"] == 120
    assert obj["s"] == ["1"] and obj["mtllib"] == ["t.mtl"] and obj["usemtl"] == ["terrain"]
    # Indices in range, and each corner's uv index equals its vertex index.
    assert obj["f"].min() == 1 and obj["f"].max() == 77
    assert (obj["f"][:, :, 0] == obj["f"][:, :, 1]).all()
    # Every vertex is used, every cell has two triangles.
    assert len(np.unique(obj["f"][:, :, 0])) == 77
    v = obj["v"].reshape(7, 11, 3)
    height = v[..., 1] if up_axis == "y" else v[..., 2]
    np.testing.assert_allclose(height, np.round(hm.astype(np.float64), 4), atol=6e-5)
    east = v[..., 0]
    north = -v[..., 2] if up_axis == "y" else v[..., 1]
    np.testing.assert_allclose(east[0], (np.arange(11) - 5) * 2.5)
    np.testing.assert_allclose(north[:, 0], (3 - np.arange(7)) * 2.5)  # row 0 is north
    # uvs on pixel centres, v = 1 at the top of the image.
    uv = obj["vt"].reshape(7, 11, 2)
    np.testing.assert_allclose(uv[0, :, 0], (np.arange(11) + 0.5) / 11, atol=1e-6)
    np.testing.assert_allclose(uv[:, 0, 1], 1 - (np.arange(7) + 0.5) / 7, atol=1e-6)


@pytest.mark.parametrize("up_axis", ["y", "z"])
def test_obj_flat_plane_normals_point_up(tmp_path, up_axis):
    M.write_obj(tmp_path / "flat.obj", np.full((5, 6), 12.0), 1.0, up_axis=up_axis)
    obj = parse_obj(tmp_path / "flat.obj")
    n = face_normals(obj["v"], obj["f"])
    up = np.array([0, 1, 0] if up_axis == "y" else [0, 0, 1])
    np.testing.assert_allclose(n @ up, 1.0, atol=1e-9)


def test_obj_s1_line_stands_alone_and_mtl_points_at_texture(tmp_path):
    M.write_obj(tmp_path / "terrain.obj", np.zeros((3, 3)), 1.0, texture_name="my tex.png")
    lines = (tmp_path / "terrain.obj").read_text().splitlines()
    i = lines.index("s 1")
    assert lines[i - 1].startswith("usemtl ") and lines[i + 1].startswith("f ")
    mtl = (tmp_path / "terrain.mtl").read_text().splitlines()
    assert "newmtl terrain" in mtl and "map_Kd my tex.png" in mtl


def test_obj_step_decimates_and_keeps_the_last_row_and_column(tmp_path):
    hm = np.arange(10 * 13, dtype=np.float32).reshape(10, 13)
    info = M.write_obj(tmp_path / "d.obj", hm, 1.0, step=4)
    obj = parse_obj(tmp_path / "d.obj")
    # rows 0, 4, 8, 9 and columns 0, 4, 8, 12
    assert len(obj["v"]) == 16 and len(obj["f"]) == 2 * 3 * 3 == info["faces"]
    heights = obj["v"][:, 1].reshape(4, 4)
    np.testing.assert_array_equal(heights, hm[np.ix_([0, 4, 8, 9], [0, 4, 8, 12])])


def test_obj_size_m_sets_the_extent(tmp_path):
    M.write_obj(tmp_path / "s.obj", np.zeros((4, 9)), size_m=800.0)
    v = parse_obj(tmp_path / "s.obj")["v"]
    assert v[:, 0].max() - v[:, 0].min() == pytest.approx(800.0)


def test_number_formatting_survives_digit_boundaries():
    # Face corner text across powers of ten, widths up to 8 (one-word path) and 9 (general path).
    for width in (3, 8, 9):
        vals = [v for v in (1, 9, 10, 99, 100, 10**width - 1) if v < 10**width]
        for v in vals:
            first, middle, last = (bytes(r).decode() for r in M._corner_table(v, 1, width))
            assert len({len(first), len(middle), len(last)}) == 1 and len(first) == 2 * width + 3
            assert first.startswith("f ") and last.endswith("\n") and "\n" not in first + middle
            for tok in (first[1:], middle, last):
                a, b = tok.split("/")
                assert int(a) == v == int(b) and " " not in a.strip() + b.strip()
    hs = np.array([0.0, -0.0, 1e-5, -4e-5, -6e-5, 0.5, -0.5, 9999.99995, -12345.6789, 3e6, -7.1])
    q_max = int(np.abs(np.rint(hs * 1e4)).max()) // 10000
    iw = len(str(q_max))
    assert M._height_int_table(q_max, iw) is None  # beyond the table: formatted per vertex
    for sel in (slice(None), slice(0, 9)):  # general path; table path (|h| < 1e6)
        x = hs[sel]
        qm = int(np.abs(np.rint(x * 1e4)).max()) // 10000
        ints, frac = M._height_tokens(x, M._height_int_table(qm, len(str(qm))), len(str(qm)), newline=False)
        txt = [bytes(i).decode() + bytes(f).decode() for i, f in zip(ints, frac, strict=True)]
        for v, t in zip(x, txt, strict=True):
            assert len(t.split()) == 1 and float(t) == pytest.approx(np.round(v, 4), abs=1e-9), (v, t)
        assert txt[4].strip() == "-0.0001" and txt[3].strip() == "0" and txt[5].strip() == "0.5"
        assert txt[6].strip() == "-0.5"
    assert txt[-1].strip() == "-12345.6789"


def test_obj_is_much_faster_than_the_per_vertex_loop(tmp_path):
    hm = np.random.default_rng(2).normal(size=(160, 160)).astype(np.float32) * 50
    M.write_obj(tmp_path / "warm.obj", hm, 30.0)  # digit tables built once per process
    t0 = time.perf_counter()
    M.write_obj(tmp_path / "fast.obj", hm, 30.0)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    M._obj_reference_loop(tmp_path / "slow.obj", hm, 30.0)
    t_slow = time.perf_counter() - t0
    # ~10x on a quiet machine at 512x512; a loose bound keeps a busy CI machine from failing it.
    assert t_slow > 3 * t_fast, (t_slow, t_fast)
    ref = parse_obj(tmp_path / "slow.obj")
    assert len(ref["v"]) == 160 * 160 and len(ref["f"]) == 2 * 159 * 159


@pytest.mark.blender
def test_obj_imports_into_blender_with_z_up_and_north_at_plus_y(tmp_path):
    bpy = pytest.importorskip("bpy")
    hm = np.random.default_rng(3).normal(size=(6, 9)).astype(np.float32) * 10
    M.write_obj(tmp_path / "terrain.obj", hm, 2.0)
    E.write_texture_png(tmp_path / "texture.png", np.zeros((6, 9, 3), np.uint8))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=str(tmp_path / "terrain.obj"))
    ob = bpy.context.selected_objects[0]
    me = ob.data
    assert (len(me.vertices), len(me.polygons), len(me.uv_layers)) == (54, 80, 1)
    assert me.materials[0].name == "terrain"
    mw = np.array(ob.matrix_world)
    co = np.array([v.co[:] for v in me.vertices]) @ mw[:3, :3].T
    nz = (np.array([p.normal[:] for p in me.polygons]) @ mw[:3, :3].T)[:, 2]
    assert (nz > 0).all()  # all faces face up
    np.testing.assert_allclose(co[:, 2], hm.ravel(), atol=1e-3)  # height is Blender Z
    assert co[0, 0] < 0 and co[0, 1] > 0  # the first pixel (north-west) is at -X, +Y
    bpy.ops.wm.read_factory_settings(use_empty=True)


# ---------------------------------------------------------------------------------------------- images


def test_height_png16_round_trip_uses_the_training_normalisation(tmp_path):
    h = np.linspace(-1, 1, 64 * 3, dtype=np.float32).reshape(3, 64)
    E.write_height_png16(tmp_path / "h.png", h)
    with Image.open(tmp_path / "h.png") as im:
        assert im.mode.startswith("I") and im.size == (64, 3)
        v = np.array(im).astype(np.int64)
    np.testing.assert_array_equal(v, np.rint((h.astype(np.float64) + 1) * 32767.5))
    assert v.min() == 0 and v.max() == 65535
    np.testing.assert_allclose(v / 32767.5 - 1, h, atol=0.5 / 32767.5 + 1e-7)


def test_height_tiff_round_trip_is_exact_metres(tmp_path):
    h = (np.random.default_rng(4).normal(size=(17, 23)) * 1234.5).astype(np.float32)
    E.write_height_tiff(tmp_path / "h.tif", h)
    with Image.open(tmp_path / "h.tif") as im:
        assert im.mode == "F"
        back = np.array(im)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, h)


def test_writers_refuse_nan_heights(tmp_path):
    bad = np.zeros((4, 4), np.float32)
    bad[1, 1] = np.nan
    for fn in (E.write_height_png16, E.write_height_tiff, M.write_obj):
        with pytest.raises(ValueError, match="NaN"):
            fn(tmp_path / "x", bad)


@pytest.mark.parametrize("soften", [0.0, 1.5])
def test_splat_weights_sum_to_255_and_follow_the_classes(soften):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, NUM_CLASSES, (30, 31)).astype(np.uint8)
    labels[:10, :10] = 3  # one block big enough to stay pure inside
    s0, s1 = E.splat_masks(labels, soften_px=soften)
    assert s0.shape == s1.shape == (30, 31, 4) and s0.dtype == s1.dtype == np.uint8
    w = np.concatenate([s0, s1], -1).astype(np.int64)
    assert (w.sum(-1) == 255).all()
    assert (w[..., 7] == 0).all()  # the spare channel
    assert (w[3:6, 3:6, 3] == 255).all()  # class 3 is splat_0 alpha, pure away from borders
    if soften == 0:
        np.testing.assert_array_equal(w.argmax(-1), labels)
        assert set(np.unique(w)) <= {0, 255}
    else:
        assert ((w > 0) & (w < 255)).any()  # soft transitions exist
        assert (w.argmax(-1) == labels)[3:6, 3:6].all()


def test_hillshade_lights_north_west_facing_slopes():
    cell = 10.0
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    flat = E.hillshade(np.zeros((32, 32)), cell)
    np.testing.assert_allclose(flat, np.sin(np.radians(45)), atol=1e-6)
    faces_nw = E.hillshade((x + y) * cell * 0.5, cell)  # rises to the south-east: faces north-west
    faces_se = E.hillshade(-(x + y) * cell * 0.5, cell)
    assert faces_nw[5:-5, 5:-5].min() > flat[0, 0] + 0.1
    assert faces_se[5:-5, 5:-5].max() < flat[0, 0] - 0.1
    # A pyramid: its upper-left (north-west) flank is brighter than its lower-right flank.
    pyramid = (16 - np.maximum(abs(x - 16), abs(y - 16))) * cell
    hs = E.hillshade(pyramid, cell)
    assert hs[12, 12] > hs[20, 20] + 0.3
    east_light = E.hillshade((x + y) * cell * 0.5, cell, azimuth_deg=90)
    assert east_light[16, 16] < faces_nw[16, 16]
    assert hs.dtype == np.float32 and hs.min() >= 0 and hs.max() <= 1


def test_plus_one_resample_puts_samples_on_pixel_corners():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = E.plus_one_resample(a)
    assert b.shape == (4, 5)
    assert b[0, 0] == a[0, 0] and b[-1, -1] == a[-1, -1]
    assert b[1, 1] == pytest.approx(a[:2, :2].mean())
    rgb = np.ones((3, 4, 3), np.float32)
    assert E.plus_one_resample(rgb).shape == (4, 5, 3)


# ---------------------------------------------------------------------------------------------- outputs


def test_write_outputs_writes_every_file_with_right_sizes_and_meta(tmp_path):
    res = make_result()
    out = tmp_path / "out"
    files = E.write_outputs(res, out, extra_meta={"inputs": {"labels": "map.png"}})
    expected = {n for f in E.DEFAULT_FORMATS for n in E.FILES[f]}
    assert "height.raw" not in expected  # engine files only when asked
    assert set(files) == expected and {p.name for p in out.iterdir()} == expected
    for name in ("texture.png", "terrain.png"):
        with Image.open(out / name) as im:
            assert im.mode == "RGB" and im.size == (40, 24)
    with Image.open(out / "texture.png") as im:
        np.testing.assert_array_equal(np.array(im), res.texture_rgb)
    with Image.open(out / "terrain.png") as im:
        np.testing.assert_array_equal(np.array(im), res.shaded_rgb)
    for name in ("splat_0.png", "splat_1.png"):
        with Image.open(out / name) as im:
            assert im.mode == "RGBA" and im.size == (40, 24)
    with Image.open(out / "height.tif") as im:
        np.testing.assert_allclose(np.array(im), res.height_m, atol=1e-3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["model"] == "synthetic" and meta["size"] == [40, 24]
    assert meta["height_range_m"] == [-100.0, 900.0] and meta["inputs"] == {"labels": "map.png"}
    assert set(meta["files"]) == expected - {"meta.json"}
    assert meta["files"]["splat_1.png"]["channels"] == {
        "R": "desert",
        "G": "mountains",
        "B": "highland",
        "A": None,
    }
    assert meta["timings"]["network"] == 0.5 and "write_obj" in meta["timings"]
    assert meta["obj"]["vertices"] == 24 * 40
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # no temporary folder left


def test_write_outputs_plus_one(tmp_path):
    res = make_result(16, 32)
    E.write_outputs(
        res, tmp_path, ["height16", "heightf", "obj", "texture", "meta"], plus_one=True, size_m=320
    )
    with Image.open(tmp_path / "height.png") as im:
        assert im.size == (33, 17)
    with Image.open(tmp_path / "height.tif") as im:
        assert im.size == (33, 17)
    with Image.open(tmp_path / "texture.png") as im:
        assert im.size == (32, 16)  # textures stay at the pixel size; cells = pixels
    obj = parse_obj(tmp_path / "terrain.obj")
    assert len(obj["v"]) == 33 * 17 and len(obj["f"]) == 2 * 32 * 16
    np.testing.assert_allclose([obj["vt"].min(), obj["vt"].max()], [0.0, 1.0])
    assert obj["v"][:, 0].max() - obj["v"][:, 0].min() == pytest.approx(320.0)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["plus_one"] and meta["files"]["height.png"]["size"] == [33, 17]


def test_write_outputs_subset_and_bad_format(tmp_path):
    files = E.write_outputs(make_result(), tmp_path / "o", "texture,splat")
    assert sorted(files) == ["splat_0.png", "splat_1.png", "texture.png"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(files)
    with pytest.raises(ValueError, match="unknown format.*glb"):
        E.write_outputs(make_result(), tmp_path / "p", "texture,glb")
    assert not (tmp_path / "p").exists()


def test_write_outputs_fails_cleanly_when_a_target_is_blocked(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "terrain.obj").mkdir()  # the mesh cannot be moved into place
    with pytest.raises(E.ExportError, match="terrain.obj"):
        E.write_outputs(make_result(), out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "terrain.obj"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_outputs_leaves_nothing_when_the_disk_fills_midway(tmp_path):
    # A real write failure halfway: a file-size limit lets the small PNGs through and stops the OBJ.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_outputs import make_result
        from terrain_core import outputs as E
        res = make_result(64, 64)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG as an OSError instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            E.write_outputs(res, {str(tmp_path / "out")!r})
        except E.ExportError as e:
            print("EXPORT ERROR:", e)
            sys.exit(3)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 3, proc.stderr
    assert "nothing was written" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # neither the output folder nor a temporary one


def test_write_outputs_rejects_bad_results(tmp_path):
    res = make_result()
    res.height[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        E.write_outputs(res, tmp_path / "o")
    res = make_result()
    res.texture = res.texture[:5]
    with pytest.raises(ValueError, match="texture"):
        E.write_outputs(res, tmp_path / "o")
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_splat_blocks_do_not_change_the_result():
    labels = np.random.default_rng(6).integers(0, NUM_CLASSES, (53, 37)).astype(np.uint8)
    whole = E.splat_masks(labels, soften_px=2.0, block_pixels=10**9)
    blocks = E.splat_masks(labels, soften_px=2.0, block_pixels=37 * 5)  # 5-row blocks, 6-row halo
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])


def test_every_writer_works_without_pillow_scipy_or_torch(tmp_path):
    # Inside Blender there is no Pillow: importing these modules and writing every file must work, and
    # reading images must say what is missing.
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PIL", "scipy", "torch"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from terrain_core import outputs as E, imageio, cli
        from terrain_core.result import TerrainResult
        r = np.random.default_rng(0)
        res = TerrainResult(np.zeros((24, 40), np.uint8), r.random((24, 40, 3), dtype=np.float32),
                            r.random((24, 40, 3), dtype=np.float32), np.zeros((24, 40), np.float32),
                            (0.0, 10.0), 0)
        np.save({str(tmp_path / "texture.npy")!r}, res.texture_rgb)
        h = np.random.default_rng(0).normal(size=(9, 12)).astype(np.float32)
        s0, s1 = E.splat_masks(np.zeros((9, 12), np.uint8), soften_px=1.0)
        assert E.hillshade(h, 1.0).shape == (9, 12) and s0[..., 0].min() == 255
        print(sorted(E.write_outputs(res, {str(tmp_path / "out")!r}, "all")))
        try:
            imageio.read_label_map({str(tmp_path / "out" / "texture.png")!r})
        except imageio.MapReadError as e:
            print("OK:", e)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("PIL", "scipy", "torch")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(sorted(n for names in E.FILES.values() for n in names))
    assert lines[1].startswith("OK:") and "Pillow" in lines[1]
    assert lines[2] == "[]"
    with Image.open(tmp_path / "out" / "texture.png") as im:  # and what was written is right
        np.testing.assert_array_equal(np.array(im), np.load(tmp_path / "texture.npy"))
    assert len(parse_obj(tmp_path / "out" / "terrain.obj")["v"]) == 24 * 40


def test_failed_export_removes_the_folders_it_created(tmp_path):
    # obj_step=0 is only found by the OBJ writer, after the parent folders and the temporary folder exist.
    with pytest.raises(ValueError, match="step"):
        E.write_outputs(make_result(), tmp_path / "a" / "b" / "out", obj_step=0)
    assert list(tmp_path.iterdir()) == []
    files = E.write_outputs(make_result(), tmp_path / "new" / "nested" / "out", "texture")
    assert files["texture.png"].is_file() and sorted(
        p.name for p in files["texture.png"].parent.iterdir()
    ) == ["texture.png"]


# ---------------------------------------------------------------------------------- grids and engines


def test_height_tif_carries_the_cell_size_of_meta_json(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    res = make_result(24, 40)
    for sub, kw in (("a", {}), ("b", {"size_m": 1000.0}), ("c", {"plus_one": True, "cell_size_m": 2.5})):
        E.write_outputs(res, tmp_path / sub, "heightf,obj,meta", **kw)
        meta = json.loads((tmp_path / sub / "meta.json").read_text())
        cell = meta["cell_size_m"]
        assert cell == {"a": 30.0, "b": 25.0, "c": 2.5}[sub]
        with rasterio.open(tmp_path / sub / "height.tif") as ds:
            assert ds.res == (cell, cell) and ds.crs is None
            assert [ds.width, ds.height] == meta["files"]["height.tif"]["size"] == meta["height_grid"]["size"]
            assert (ds.transform.c, ds.transform.f) == tuple(meta["files"]["height.tif"]["origin_m"])
            # centred on 0, 0 like the mesh: sample centres at the OBJ's vertex positions
            assert ds.xy(0, 0) == pytest.approx((-(ds.width - 1) * cell / 2, (ds.height - 1) * cell / 2))
            band = ds.read(1)
        want = E.plus_one_resample(res.height_m) if sub == "c" else res.height_m
        np.testing.assert_allclose(band, want, atol=2e-3)
        obj = parse_obj(tmp_path / sub / "terrain.obj")
        assert obj["v"][0, 0] == pytest.approx(ds.xy(0, 0)[0], abs=1e-3)


def test_raw16_round_trips_into_the_same_heights(tmp_path):
    res = make_result(24, 40)
    E.write_outputs(res, tmp_path, "height16,raw16,meta")
    meta = json.loads((tmp_path / "meta.json").read_text())
    entry = meta["files"]["height.raw"]
    assert entry["byte_order"] == "little-endian" and entry["dtype"] == "uint16"
    assert entry["row_order"].startswith("row 0 = south") and entry["bytes"] == 40 * 24 * 2
    w, h = entry["size"]
    raw = np.fromfile(tmp_path / "height.raw", dtype="<u2").reshape(h, w)[::-1]  # north row first
    with Image.open(tmp_path / "height.png") as im:
        np.testing.assert_array_equal(raw, np.array(im))  # the same encoding as height.png
    lo, hi = meta["height_range_m"]
    metres = lo + raw / 65535.0 * (hi - lo)  # the encoding meta.json states
    step = (hi - lo) / 65535.0
    np.testing.assert_allclose(metres, res.height_m, atol=step / 2 + 1e-4)


@pytest.mark.parametrize(
    "engine,w,h,want",
    [
        ("unity", 4096, 4096, (4097, 4097)),
        ("unity", 1000, 600, (1025, 1025)),
        ("unity", 700, 700, (513, 513)),
        ("unreal", 4096, 4096, (4033, 4033)),
        ("unreal", 2048, 1024, (2017, 1009)),
        ("unreal", 40, 24, (127, 127)),
    ],
)
def test_engine_grid_picks_the_nearest_recommended_size(engine, w, h, want):
    assert E.engine_grid(engine, w, h) == want


@pytest.mark.parametrize("engine", ["unity", "unreal"])
def test_engine_heights_are_resampled_and_keep_the_extent(tmp_path, engine):
    rasterio = pytest.importorskip("rasterio")
    res = make_result(24, 40)
    E.write_outputs(res, tmp_path, "texture,height16,heightf,raw16,obj,meta", engine=engine, size_m=400.0)
    meta = json.loads((tmp_path / "meta.json").read_text())
    nw, nh = E.engine_grid(engine, 40, 24)
    grid = meta["height_grid"]
    assert grid["size"] == [nw, nh] and grid["engine"] == engine and grid["layout"].startswith("corners")
    cx, cy = grid["cell_size_m"]
    assert (nw - 1) * cx == pytest.approx(400.0) and (nh - 1) * cy == pytest.approx(240.0)  # extent kept
    with Image.open(tmp_path / "height.png") as im:
        assert im.size == (nw, nh)
    with Image.open(tmp_path / "texture.png") as im:
        assert im.size == (40, 24)  # textures stay at the pixel size
    with rasterio.open(tmp_path / "height.tif") as ds:
        assert ds.res == pytest.approx((cx, cy)) and (ds.width, ds.height) == (nw, nh)
        band = ds.read(1)
    # corners take the corner pixels; the heights stay within the map's
    assert band[0, 0] == pytest.approx(res.height_m[0, 0], abs=1e-3)
    assert band[-1, -1] == pytest.approx(res.height_m[-1, -1], abs=1e-3)
    assert res.height_m.min() - 1e-3 <= band.min() and band.max() <= res.height_m.max() + 1e-3
    assert (tmp_path / "height.raw").stat().st_size == nw * nh * 2
    assert meta["obj"]["vertices"] == 24 * 40  # the mesh stays on the pixels
    imp = meta["engine_import"]
    if engine == "unity":
        assert imp["resolution"] == nw and imp["terrain_size_m"] == [400.0, 1000.0, 240.0]
    else:  # z = location + (v - 32768) / 128 * z_scale reproduces lo and hi (cm)
        z = [imp["location_z_cm"] + (v - 32768) / 128 * imp["scale"][2] for v in (0, 65535)]
        assert z == pytest.approx([-100.0 * 100, 900.0 * 100])
    with pytest.raises(ValueError, match="plus_one or engine"):
        E.write_outputs(res, tmp_path / "x", engine=engine, plus_one=True)
    with pytest.raises(ValueError, match="engine must be"):
        E.write_outputs(res, tmp_path / "x", engine="godot")
    assert not (tmp_path / "x").exists()


def test_mesh_step_keeps_large_meshes_within_the_budget():
    assert E.mesh_step(1024, 1024) == 1 and E.mesh_step(1025, 1025) == 1  # full mesh up to 1024 (+1)
    assert E.mesh_step(4096, 4096) == 4 and E.mesh_step(4097, 4097) == 4
    for rows_n, cols_n in ((4096, 4096), (2000, 3000), (1100, 8192), (16385, 16385)):
        step = E.mesh_step(rows_n, cols_n)

        def verts(s, r=rows_n, c=cols_n):
            return len(M.grid_indices(r, s)) * len(M.grid_indices(c, s))

        assert verts(step) <= E.MESH_VERTEX_BUDGET < verts(step - 1), (rows_n, cols_n)


def test_large_maps_get_a_reduced_mesh_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "MESH_FULL_MAX_SIDE", 16)
    monkeypatch.setattr(E, "MESH_VERTEX_BUDGET", 100)
    res = make_result(24, 40)
    E.write_outputs(res, tmp_path / "auto", "obj,meta")
    meta = json.loads((tmp_path / "auto" / "meta.json").read_text())
    assert meta["obj"]["reduced"] and meta["obj"]["step"] == 4 and meta["obj"]["grid"] == [40, 24]
    obj = parse_obj(tmp_path / "auto" / "terrain.obj")
    assert len(obj["v"]) == meta["obj"]["vertices"] == 11 * 7  # step 3 would be 9 x 14 = 126
    kept = res.height_m[[0, 4, 8, 12, 16, 20, 23]][:, [*range(0, 40, 4), 39]]  # the last row/column stay
    np.testing.assert_allclose(obj["v"][:, 1], kept.ravel(), atol=1e-4)
    E.write_outputs(res, tmp_path / "full", "obj,meta", obj_step=1)
    meta = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert not meta["obj"]["reduced"] and meta["obj"]["vertices"] == 24 * 40
