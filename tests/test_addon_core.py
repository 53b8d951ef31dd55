"""The add-on's pure half (blender_addon.core), tested without Blender: maps, grid arrays, PNG, jobs,
debounce, requests and the generate pipeline."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from blender_addon.core import debounce, grid, jobs, maps, pipeline, png
from terrain_core.labels import NUM_CLASSES, PALETTE, LabelMapError, labels_from_rgb, resize_nearest

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_core_imports_without_bpy():
    code = (
        "import sys; import blender_addon, blender_addon.core.maps, blender_addon.core.grid, "
        "blender_addon.core.jobs, blender_addon.core.debounce, blender_addon.core.png, "
        "blender_addon.core.pipeline, blender_addon.core.batch_options, blender_addon.core.object_meta; "
        "bad = [m for m in ('bpy', 'torch', 'PIL', 'scipy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------------------ maps


def test_pixels_round_trip_and_orientation():
    lab = np.zeros((3, 4), np.uint8)
    lab[0, :] = 5  # north row = mountains
    lab[:, 3] = 0
    px = maps.pixels_from_labels(lab)
    assert px.dtype == np.float32 and px.size == 3 * 4 * 4
    # Blender stores the bottom row first: the first pixel is the south-west corner
    assert np.allclose(px[:3], PALETTE[lab[2, 0]] / 255.0)
    assert np.array_equal(maps.labels_from_pixels(px, 4, 3), lab)


def test_soft_edges_snap_to_nearest_class():
    rgb = np.zeros((1, 2, 4), np.float32)
    rgb[0, 0, :3] = (PALETTE[0] * 0.9 + PALETTE[5] * 0.1) / 255.0  # mostly water, a bit of mountain
    rgb[0, 1, :3] = (PALETTE[5] * 0.8 + PALETTE[1] * 0.2) / 255.0
    lab = maps.labels_from_pixels(rgb[::-1].ravel(), 2, 1)
    assert lab.tolist() == [[0, 5]]


def test_strict_refuses_non_maps_and_bad_buffers():
    noise = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    noise[..., :3] = 0.0  # black is far from every class colour
    with pytest.raises(LabelMapError, match="far from the terrain palette"):
        maps.labels_from_pixels(noise.ravel(), 16, 16, strict=True)
    assert maps.labels_from_pixels(noise.ravel(), 16, 16).shape == (16, 16)  # the canvas is never refused
    with pytest.raises(LabelMapError, match="does not fit"):
        maps.labels_from_pixels(np.zeros(10, np.float32), 4, 4)


def test_grey_id_images_read_as_ids():
    ids = np.arange(NUM_CLASSES, dtype=np.float32)[None, :] / 255.0
    rgba = np.repeat(ids[..., None], 4, axis=-1)
    assert maps.labels_from_rgb_array(rgba).tolist() == [list(range(NUM_CLASSES))]
    # grey 150 (mountains' colour) is no class id: an image with it is grey colours and goes through the
    # palette, as the CLI's files do (its one pixel of grey 2 too)
    rgba[0, 1:, :3] = 150 / 255.0
    lab = maps.labels_from_rgb_array(rgba)
    assert lab.tolist() == labels_from_rgb(rgba).tolist() and (lab[0, 1:] == 5).all()


def test_grey_id_rule_is_the_one_of_the_files():
    from terrain_core.imageio import class_ids_of_grey

    assert class_ids_of_grey(np.array([[0, 6]], np.uint16)).tolist() == [[0, 6]]
    assert class_ids_of_grey(np.array([[0, 7]], np.uint8)) is None
    assert class_ids_of_grey(np.array([[0.0, 2.0]])).tolist() == [[0, 2]]
    assert class_ids_of_grey(np.array([[0.0, 2.0004]])) is None  # files: whole numbers only
    assert class_ids_of_grey(np.array([[0.0, 2.0004]]), atol=1e-3).tolist() == [[0, 2]]
    assert class_ids_of_grey(np.array([[-1.0, 2.0]]), atol=1e-3) is None
    assert class_ids_of_grey(np.array([[np.nan, 2.0]]), atol=1e-3) is None


def test_class_enum_items_map_back_to_ids():
    from blender_addon.core.classes import CLASS_ITEMS, class_id

    assert [class_id(item[0]) for item in CLASS_ITEMS] == list(range(NUM_CLASSES))
    assert [item[3] for item in CLASS_ITEMS] == list(range(NUM_CLASSES))  # the enum value is the id
    assert class_id("WATER") == 0 and class_id("MOUNTAINS") == 5


def test_props_and_addon_are_leaves():
    """The settings and the preferences import nothing of the add-on's behaviour (live mode reaches props
    through props.live_mode_listeners), so no import circle can run through them."""
    import ast

    allowed = {"props.py": {"core.classes", "addon"}, "addon.py": set()}
    for name, ok in allowed.items():
        tree = ast.parse((ROOT / "blender_addon" / "blender" / name).read_text())
        ours = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and n.module
        } | {"." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and not n.module}
        assert {m.removeprefix(".") for m in ours} <= ok, (name, ours)


def test_resize_nearest_keeps_ids_and_shape():
    lab = maps.random_map(3, 64)
    small = resize_nearest(lab, 16, 32)
    assert small.shape == (16, 32) and set(np.unique(small)) <= set(np.unique(lab))
    assert resize_nearest(lab, 64, 64) is lab


def test_random_map_is_seeded_and_plausible():
    a, b, c = maps.random_map(1, 96), maps.random_map(1, 96), maps.random_map(2, 96)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    shares = np.bincount(a.ravel(), minlength=NUM_CLASSES) / a.size
    assert 0.15 < shares[0] < 0.3  # some sea
    assert shares[5] > 0.03  # some mountains
    assert (shares > 0).sum() >= 4
    with pytest.raises(ValueError):
        maps.random_map(0, 4)


def test_checksum_and_fill():
    a = maps.filled(8, 4, 2)
    assert a.shape == (4, 8) and (a == 2).all()
    b = a.copy()
    b[0, 0] = 3
    assert maps.map_checksum(a) == maps.map_checksum(a.copy()) != maps.map_checksum(b)
    assert maps.map_checksum(a) != maps.map_checksum(a.reshape(8, 4))  # same bytes, other shape
    with pytest.raises(LabelMapError):
        maps.filled(2, 2, 7)


# ------------------------------------------------------------------------------------------ grid


def test_grid_topology_and_geometry():
    h = np.arange(12, dtype=np.float32).reshape(3, 4)  # rises to the east and south
    g = grid.heightfield_to_grid(h, 40.0)
    assert (g.ny, g.nx) == (3, 4) and g.num_vertices == 12 and g.num_faces == 6
    assert g.num_edges == 3 * 3 + 2 * 4
    pos = g.positions.reshape(-1, 3)
    assert np.allclose(pos[:, 2], h.ravel())
    # row 0 is north (+y), column 0 west (-x); centred; pixel-centre spacing 10 m
    assert pos[0, 0] < 0 < pos[3, 0] and pos[0, 1] > 0 > pos[-1, 1]
    assert np.isclose(pos[1, 0] - pos[0, 0], 10.0) and np.isclose(pos[0, 0], -15.0)
    cv = g.corner_vert.reshape(-1, 4)
    ev = g.edge_verts.reshape(-1, 2)
    ce = g.corner_edge.reshape(-1, 4)
    for f in range(g.num_faces):  # every corner's edge joins it to the next corner
        for k in range(4):
            assert set(ev[ce[f, k]]) == {cv[f, k], cv[f, (k + 1) % 4]}
    # counter-clockwise seen from above: normals point up on a flat grid
    flat = grid.heightfield_to_grid(np.zeros((3, 4), np.float32), 40.0).positions.reshape(-1, 3)
    a, b, c = flat[cv[:, 0]], flat[cv[:, 1]], flat[cv[:, 2]]
    assert (np.cross(b - a, c - b)[:, 2] > 0).all()
    uv = g.uv.reshape(-1, 2)
    assert uv.min() > 0 and uv.max() < 1
    assert np.allclose(uv[0], [0.5 / 4, 1 - 0.5 / 3])  # NW corner of face 0 = north-west pixel centre
    assert np.array_equal(g.loop_start, np.arange(0, 24, 4))


def test_grid_resolution_is_independent_and_keeps_aspect():
    h = np.random.default_rng(0).random((64, 128)).astype(np.float32)
    g = grid.heightfield_to_grid(h, 100.0, resolution=33)
    assert (g.ny, g.nx) == (16, 33)
    z = g.positions.reshape(g.ny, g.nx, 3)[..., 2]
    assert np.isclose(z[0, 0], h[0, 0]) and np.isclose(z[-1, -1], h[-1, -1])  # corners kept
    assert h.min() <= z.min() and z.max() <= h.max()  # bilinear never overshoots
    flat = grid.heightfield_to_grid(h, 100.0, resolution=8, flat=True)
    assert (flat.positions[2::3] == 0).all()
    for bad in (dict(resolution=1), dict(resolution=5000)):
        with pytest.raises(ValueError):
            grid.heightfield_to_grid(h, 100.0, **bad)
    with pytest.raises(ValueError, match="NaN"):
        grid.heightfield_to_grid(np.full((4, 4), np.nan, np.float32), 10.0)


# ------------------------------------------------------------------------------------------ png


@pytest.mark.parametrize(
    "img",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.random.default_rng(1).integers(0, 255, (5, 7, 3), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 255, (2, 3, 4), dtype=np.uint8),
        np.random.default_rng(3).integers(0, 65535, (6, 5), dtype=np.uint16),
    ],
)
def test_png_round_trip_through_pillow(img, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    p = png.write_png(tmp_path / "a.png", img)
    back = np.array(Image.open(p))
    assert back.shape == img.shape and np.array_equal(back.astype(img.dtype), img)
    assert not list(tmp_path.glob(".*part"))
    with pytest.raises(ValueError):
        png.encode_png(np.zeros((2, 2), np.float32))


# ------------------------------------------------------------------------------------------ jobs / debounce


def test_job_result_progress_error_and_cancel():
    def work(progress, cancel):
        for i in range(5):
            progress(i / 4)
            if cancel.is_set():
                raise pipeline.GenerationCancelled("stopped")
            time.sleep(0.01)
        return 42

    j = jobs.Job(work).start()
    assert j.wait(5) and j.result == 42 and j.error is None and j.progress == 1.0

    gate = threading.Event()

    def slow(progress, cancel):
        gate.wait(5)
        if cancel.is_set():
            raise pipeline.GenerationCancelled("stopped")
        return 1

    j = jobs.Job(slow).start()
    assert not j.done
    j.cancel()
    gate.set()
    assert (
        j.wait(5) and isinstance(j.error, pipeline.GenerationCancelled) and j.cancelled and j.result is None
    )

    j = jobs.Job(lambda p, c: 1 / 0).start()
    assert j.wait(5) and isinstance(j.error, ZeroDivisionError) and "ZeroDivisionError" in j.traceback
    assert jobs.run_sync(lambda p, c: "sync") == "sync"


def test_debouncer_waits_for_quiet_and_fires_once():
    d = debounce.Debouncer(0.5)
    assert not d.observe("a", 0.0)
    assert not d.observe("a", 0.3)  # still within the delay
    assert not d.observe("b", 0.4)  # the map changed: the clock restarts
    assert not d.observe("b", 0.8)
    assert d.observe("b", 0.95)  # still for 0.55 s: start
    assert not d.observe("b", 5.0)  # never twice for the same map
    d.forget()
    assert d.observe("b", 5.1)  # after a failed preview it may start again
    with pytest.raises(ValueError):
        debounce.Debouncer(-1)


# ------------------------------------------------------------------------------------------ pipeline


def _labels():
    lab = np.zeros((32, 48), np.uint8)
    lab[:, 24:] = 5
    return lab


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(resolution=8), "generation resolution"),
        (dict(height_min_m=10.0, height_max_m=5.0), "max > min"),
        (dict(size_m=0.0), "terrain size"),
        (dict(runtime="CUDA"), "runtime"),
        (dict(mesh_resolution=1), "mesh resolution"),
        (dict(model_path="model.pt"), ".onnx or .safetensors"),
        (dict(model_path="/nonexistent/model.onnx"), "not found"),
        (dict(labels=np.full((4, 4), 9, np.uint8)), "class ids"),
        # the panel's IntProperty is 32-bit: a larger seed could not be written back to it
        (dict(seed=2**31), "0..2147483647"),
        (dict(seed=-1), "0..2147483647"),
    ],
)
def test_request_validation_says_what_is_wrong(change, match):
    req = pipeline.GenerateRequest(**{"labels": _labels(), **change})
    with pytest.raises((ValueError, LabelMapError)) as e:
        req.validated()
    assert match in str(e.value)


def test_generation_shape_keeps_aspect():
    req = pipeline.GenerateRequest(labels=_labels(), resolution=96)
    assert req.generation_shape() == (64, 96)
    assert pipeline.GenerateRequest(labels=_labels(), resolution=0).generation_shape() == (32, 48)


def test_run_generation_end_to_end_and_cancel():
    req = pipeline.GenerateRequest(
        labels=_labels(),
        seed=3,
        resolution=64,
        mesh_resolution=17,
        size_m=50.0,
        height_min_m=-5.0,
        height_max_m=15.0,
    )
    seen = []
    out = pipeline.run_generation(req, progress=seen.append)
    assert out.result.size == (43, 64)  # 32x48 at 64 on the longer side: round(64 * 32 / 48)
    assert out.height_m.shape == out.result.size
    assert np.isfinite(out.height_m).all() and -5.0 <= out.height_m.min() and out.height_m.max() <= 15.0
    assert (out.grid.ny, out.grid.nx) == (11, 17)
    assert out.checksum == maps.map_checksum(req.labels)
    assert seen and seen == sorted(seen) and seen[-1] >= 0.9
    again = pipeline.run_generation(req)
    assert np.array_equal(again.height_m, out.height_m)  # deterministic per seed (and the model is cached)
    assert again.timings["load_model"] < 0.5
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(pipeline.GenerationCancelled):
        pipeline.run_generation(req, cancel=cancel)


def test_object_metadata_is_one_record_for_painted_and_batch_maps():
    from blender_addon.core.object_meta import object_metadata

    req = pipeline.GenerateRequest(labels=_labels(), seed=5, resolution=32, height_min_m=-2.0, erosion="off")
    out = pipeline.run_generation(req)
    painted = object_metadata(req, out, map_image="Terrain map", preview=True)
    from_file = object_metadata(req, out, map_file="/maps/a.png")
    assert list(painted) == list(from_file)  # the same keys, in the same order
    assert painted["map_image"] == "Terrain map" and painted["map_file"] == "" and painted["preview"]
    assert from_file["map_file"] == "/maps/a.png" and from_file["map_image"] == ""
    assert not from_file["preview"]
    assert (painted["seed"], painted["height_min_m"], painted["erosion"]) == (5, -2.0, "off")
    assert painted["map_checksum"] == maps.map_checksum(req.labels) and painted["model"] == out.model_name
    assert all(isinstance(v, (str, int, float, bool)) for v in painted.values())  # an ID property holds it


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00not a model" * 100)
    req = pipeline.GenerateRequest(labels=_labels(), resolution=32, model_path=str(bad))
    with pytest.raises(pipeline.ModelFileError, match="broken.onnx"):
        pipeline.run_generation(req)


# ------------------------------------------------------------------------------------------ batch arguments


def test_batch_refuses_old_blender_and_parses_arguments(tmp_path):
    from blender_addon.core import batch_options as batch

    msg = batch.check_blender((3, 4, 1))
    assert msg and "3.4.1 is too old" in msg and "4.2.0" in msg
    assert batch.check_blender((4, 2, 0)) is None
    assert batch.script_args(["blender", "-b", "--python", "x.py", "--", "--out", "o"]) == ["--out", "o"]
    assert batch.parse_seeds("3, 1-2,3") == [3, 1, 2]
    assert batch.parse_height("120") == (0.0, 120.0) and batch.parse_height("-10,50") == (-10.0, 50.0)
    for bad in ("5,1", "1,2,3"):
        with pytest.raises(ValueError):
            batch.parse_height(bad)
    with pytest.raises(ValueError, match="unknown format"):
        batch.parse_formats("png,fbx")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    found, errors = batch.collect_inputs(
        [str(tmp_path), str(tmp_path / "a.png"), str(tmp_path / "empty"), "nope.png"]
    )
    assert found == [tmp_path / "a.png"]
    assert len(errors) == 2 and "no map images" in errors[0] and "no such file" in errors[1]
    opts = batch.parse_args(
        ["--input", "m", "--out", "o", "--seeds", "0-2", "--formats", "png,exr", "--render-size", "64x32"]
    )
    assert opts.seeds == (0, 1, 2) and opts.formats == {"png", "exr"} and opts.render_size == (64, 32)
    assert opts.height_range == (0.0, 40.0) and opts.tile == -1 and opts.inputs == ("m",)
    with pytest.raises(AttributeError):  # typed and frozen below the command line
        opts.seeds = (5,)
    assert batch.parse_args(["-i", "m", "-o", "o", "--seed", "7", "--height-m", "9"]).seeds == (7,)
    for bad, pattern in (
        (["--render-size", "64"], "--render-size must be WxH"),
        (["--render-size", "8x8"], "at least 16x16"),
        (["--tile", "16"], "must be -1, 0 or at least 32"),
    ):
        with pytest.raises(batch.BatchUsageError, match=pattern):
            batch.parse_args(["--input", "m", "--out", "o", *bad])
    # the same seed range as the CLI and the add-on, refused while parsing, before any map is read
    with pytest.raises(batch.BatchUsageError, match=r"0\.\.2147483647"):
        batch.parse_args(["--input", "m", "--out", "o", "--seeds", f"{2**31 - 1}-{2**31}"])


def test_batch_reduces_the_mesh_of_large_maps_by_default():
    from blender_addon.core import batch_options as batch
    from terrain_core import outputs

    assert batch.default_mesh_resolution(256) == 0 and batch.default_mesh_resolution(1024) == 0
    side = batch.default_mesh_resolution(4096)
    assert side == 1025 and side * side <= outputs.MESH_VERTEX_BUDGET < (side + 1) ** 2


def test_addon_imports_only_what_blender_has():
    """Blender's Python has numpy but no torch, Pillow, scipy or training code; core/ has no bpy either."""
    import ast

    allowed_core = {"terrain_core", "numpy"}
    forbidden = {"torch", "PIL", "scipy", "safetensors", "training", "onnx", "sympy"}
    import build_addon

    inference = set(build_addon.CORE_MODULES)  # what the zip's core wheel holds
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "blender_addon").rglob("*.py")):
        rel = path.relative_to(ROOT / "blender_addon").as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in forbidden, f"{rel} imports {name}"
                if top == "terrain_core" and "." in name:
                    assert name.split(".")[1] in inference, f"{rel} imports {name} (not shipped)"
                if rel.startswith("core/"):
                    assert top in stdlib or top in allowed_core, f"{rel} (pure half) imports {name}"


def test_core_wheel_ships_every_module_its_modules_import():
    """The add-on's core wheel (build_addon.CORE_MODULES) holds every terrain_core module that a shipped
    module imports, at any depth of the file (terrain_core.nn travels separately, with torch)."""
    import ast

    import build_addon

    shipped = set(build_addon.CORE_MODULES)
    missing = []
    for name in sorted(shipped):
        for node in ast.walk(ast.parse((ROOT / "terrain_core" / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "terrain_core":
                mods = [f"terrain_core.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                parts = mod.split(".")
                if parts[0] == "terrain_core" and len(parts) > 1 and parts[1] != "nn":
                    if parts[1] not in shipped and (ROOT / "terrain_core" / f"{parts[1]}.py").is_file():
                        missing.append(f"{name} imports {mod}")
    assert not missing, missing


def test_resolve_model_path_is_the_shared_choice_made_absolute(tmp_path, monkeypatch):
    import terrain_core.model_format as mf

    monkeypatch.setattr(mf, "MODELS_DIR", tmp_path)
    assert pipeline.resolve_model_path("", "TORCH") is None  # nothing shipped: the untrained stand-in
    for name in ("default.onnx", "default.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    assert pipeline.resolve_model_path("", "AUTO") == str(tmp_path / "default.onnx")
    assert pipeline.resolve_model_path("", "ONNX") == str(tmp_path / "default.onnx")
    assert pipeline.resolve_model_path("", "TORCH") == str(tmp_path / "default.safetensors")
    home = __import__("pathlib").Path.home()
    assert pipeline.resolve_model_path("~/m.safetensors", "ONNX") == str((home / "m.safetensors").resolve())
