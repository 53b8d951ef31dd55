"""The add-on inside real Blender (the bpy 5.0.1 module, background mode, temporary user folders).

One bpy session for the module; each test starts from factory settings with the add-on registered.
Painting is simulated by writing pixels (``paint.image_paint`` crashes without a UI undo stack).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import addon_scene, data_snapshot, exr_channels, view3d_context  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon.blender import build, generate, live, paint, scene_request  # noqa: E402
from blender_addon.core import maps, pipeline  # noqa: E402
from terrain_core.labels import CLASSES, PALETTE  # noqa: E402


@pytest.fixture
def scene():
    """Factory settings, the add-on registered, a 32x32 paint plane; unregistered afterwards."""
    with addon_scene(32) as sc:
        sc.terrain_gan.resolution = 32
        yield sc


def paint_half_mountains(img):
    """Water in the west half, mountains in the east (as strokes would leave it)."""
    w, h = img.size
    lab = np.zeros((h, w), np.uint8)
    lab[:, w // 2 :] = 5
    img.pixels.foreach_set(maps.pixels_from_labels(lab))
    img.update()
    return lab


# ------------------------------------------------------------------------------------------ registration


def test_register_unregister_twice():
    for _ in range(2):
        blender_addon.register()
        assert bpy.types.TERRAIN_OT_generate.is_registered
        assert hasattr(bpy.types.Scene, "terrain_gan")
        assert bpy.context.scene.terrain_gan.resolution == 256
        blender_addon.unregister()
        assert (
            not hasattr(bpy.types, "TERRAIN_OT_generate") or not bpy.types.TERRAIN_OT_generate.is_registered
        )
        assert not hasattr(bpy.types.Scene, "terrain_gan")


def test_tooltips_and_names_follow_conventions():
    from blender_addon.blender import classes

    for cls in classes:
        assert cls.__name__.startswith(("TERRAIN_OT_", "TERRAIN_PT_", "TERRAIN_PG_", "TERRAIN_Addon"))
        if cls.__name__.startswith("TERRAIN_OT_"):
            assert cls.__doc__ and cls.bl_idname.startswith("terrain.")


# What the real layout offers: a panel calling anything else would fail in Blender, so the mock fails too.
_UILAYOUT_FUNCTIONS = set(bpy.types.UILayout.bl_rna.functions.keys())
_UILAYOUT_PROPERTIES = set(bpy.types.UILayout.bl_rna.properties.keys())


class MockLayout:
    """Records what a panel draws; every sub-layout records into the same list. Only methods and
    properties that ``bpy.types.UILayout`` has are accepted."""

    def __init__(self, calls):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        if name not in _UILAYOUT_PROPERTIES:
            raise AttributeError(f"bpy.types.UILayout has no property {name!r}")
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        if name in _UILAYOUT_PROPERTIES:
            return True  # enabled, active, ...: read before any draw code set them
        if name not in _UILAYOUT_FUNCTIONS:
            raise AttributeError(f"bpy.types.UILayout has no method {name!r}")

        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name in ("row", "column", "box", "grid_flow", "split", "column_flow"):
                return MockLayout(self.calls)
            if name in ("operator",):
                return type("OpProps", (), {})()
            return None

        return method


def test_mock_layout_rejects_what_uilayout_lacks():
    layout = MockLayout([])
    layout.label(text="x")  # a real method passes
    layout.use_property_split = True  # a real property passes
    with pytest.raises(AttributeError, match="no method 'lable'"):
        layout.lable(text="x")
    with pytest.raises(AttributeError, match="no property"):
        layout.not_a_property = 1


def _draw(panel_cls):
    calls = []
    fake = type("P", (), {"layout": MockLayout(calls), "draw_settings": panel_cls.draw_settings})()
    panel_cls.draw(fake, bpy.context)
    return calls


def test_panels_draw_against_mock_layout(scene):
    from blender_addon.blender.panel import TERRAIN_PT_export, TERRAIN_PT_generate, TERRAIN_PT_paint

    assert TERRAIN_PT_paint.bl_category == "Generate Terrain" and TERRAIN_PT_paint.bl_region_type == "UI"
    calls = _draw(TERRAIN_PT_paint)
    ops = [c[1][0] for c in calls if c[0] == "operator"]
    assert "terrain.new_paint_plane" in ops and "terrain.random_map" in ops and "terrain.load_map" in ops
    class_buttons = [
        c[2].get("text") for c in calls if c[0] == "operator" and c[1][0] == "terrain.set_paint_class"
    ]
    assert class_buttons == [c.name.capitalize() for c in CLASSES]
    assert any(c[0] == "template_palette" for c in calls)
    calls = _draw(TERRAIN_PT_generate)
    props = [c[1][1] for c in calls if c[0] == "prop"]
    for p in (
        "model_path",
        "seed",
        "resolution",
        "mesh_resolution",
        "height_min_m",
        "height_max_m",
        "tiling",
        "live_mode",
        "placement",
    ):
        assert p in props
    assert ("operator", ("terrain.generate",), {"icon": "RNDCURVE"}) in calls
    calls = _draw(TERRAIN_PT_export)
    assert any(c[0] == "operator" and c[1][0] == "terrain.export" for c in calls)


# ------------------------------------------------------------------------------------------ paint


def test_paint_plane_setup(scene):
    s = scene.terrain_gan
    ob, img = s.paint_object, s.paint_image
    assert ob is not None and img is not None and tuple(img.size) == (32, 32)
    assert ob.mode == "TEXTURE_PAINT" and bpy.context.view_layer.objects.active == ob
    assert np.isclose(ob.dimensions.x, 40.0) and ob.hide_render
    assert (paint.map_labels(img) == 0).all()  # filled with water
    ip = scene.tool_settings.image_paint
    pal = ip.palette
    assert [tuple(round(v * 255) for v in c.color) for c in pal.colors] == [c.rgb for c in CLASSES]
    assert np.allclose([tuple(c.color) for c in pal.colors], PALETTE / 255.0, atol=1e-6)
    assert ip.brush is not None and ip.brush.name == paint.BRUSH_NAME
    assert ip.canvas == img and ip.mode == "IMAGE"
    ups = paint.unified_settings(bpy.context)
    with view3d_context():
        bpy.ops.terrain.set_paint_class(terrain_class="FOREST")
    assert np.allclose(tuple(ups.color), PALETTE[2] / 255.0, atol=1e-6)


def test_fill_clear_random_save_and_load(scene, tmp_path):
    img = scene.terrain_gan.paint_image
    with view3d_context():
        bpy.ops.terrain.fill_map(terrain_class="DESERT")
        assert (paint.map_labels(img) == 4).all()
        scene.terrain_gan.fill_class = "FOREST"
        bpy.ops.terrain.clear_map()
        assert (paint.map_labels(img) == 2).all()
        scene.terrain_gan.random_seed = 7
        bpy.ops.terrain.random_map()
        rnd = paint.map_labels(img)
        assert np.array_equal(rnd, maps.random_map(7, 32))
        out = tmp_path / "map.png"
        bpy.ops.terrain.save_map(filepath=str(out))
        bpy.ops.terrain.clear_map()
        bpy.ops.terrain.load_map(filepath=str(out))
        assert np.array_equal(paint.map_labels(img), rnd)
        # A map of another size, with soft (blended) edges: the image takes its size, pixels snap.
        from blender_addon.core.png import write_png

        big = np.zeros((20, 30, 3), np.uint8)
        big[:] = PALETTE[1]
        big[:, 15:] = (PALETTE[5] * 0.85 + PALETTE[1] * 0.15).astype(np.uint8)
        write_png(tmp_path / "soft.png", big)
        bpy.ops.terrain.load_map(filepath=str(tmp_path / "soft.png"))
        lab = paint.map_labels(img)
        assert lab.shape == (20, 30) and (lab[:, :15] == 1).all() and (lab[:, 15:] == 5).all()
        with pytest.raises(RuntimeError, match="no such file"):
            bpy.ops.terrain.load_map(filepath=str(tmp_path / "missing.png"))
        # Blender would pad a PNG whose data stops early; the strict check refuses it, and the map stays.
        from bad_images import short_png

        short_png(tmp_path / "short.png", PALETTE[0], 32, 64, rows=8)
        with pytest.raises(RuntimeError, match="holds 8 of 64 rows"):
            bpy.ops.terrain.load_map(filepath=str(tmp_path / "short.png"))
        assert np.array_equal(paint.map_labels(img), lab)


def test_painting_by_pixels_is_read_back(scene):
    img = scene.terrain_gan.paint_image
    lab = paint_half_mountains(img)
    # A soft stroke edge leaves blends; they snap to the nearest class.
    px = np.empty(32 * 32 * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(32, 32, 4)
    px[:, 15, :3] = (PALETTE[0] * 0.6 + PALETTE[5] * 0.4) / 255.0
    img.pixels.foreach_set(px.ravel())
    assert np.array_equal(paint.map_labels(img), lab)


# ------------------------------------------------------------------------------------------ generate


def test_generate_end_to_end_and_one_undo_step(scene):
    """Operators called from Python never push undo steps themselves (bpy.ops nests them in the caller's
    step), so the test pushes the step that Blender's UI pushes after an UNDO operator finishes, then checks
    that undoing that one step removes everything Generate made. Undo works in background mode with a
    region in the context override."""
    s = scene.terrain_gan
    s.resolution, s.mesh_resolution, s.height_min_m, s.height_max_m, s.seed = 32, 17, 0.0, 30.0, 5
    lab = paint_half_mountains(s.paint_image)
    with view3d_context():
        bpy.ops.ed.undo_push(message="before generate")
        before = data_snapshot()
        assert bpy.ops.terrain.generate() == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Generate Terrain")
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        me = ob.data
        assert len(me.vertices) == 17 * 17 and len(me.polygons) == 16 * 16
        assert not me.validate()  # nothing to fix: the bulk-written topology is consistent
        assert len(me.uv_layers) == 1
        uv = np.empty(len(me.loops) * 2, np.float32)
        me.uv_layers[0].uv.foreach_get("vector", uv)
        assert 0 < uv.min() and uv.max() < 1
        tex_img = build.material_image(me.materials[0])
        assert tex_img is not None and tuple(tex_img.size) == (32, 32) and tex_img.packed_file is not None
        meta = ob[build.META_KEY]
        assert meta["seed"] == 5 and meta["map_checksum"] == maps.map_checksum(lab)
        assert meta["map_image"] == s.paint_image.name and meta["model"]
        assert np.allclose(ob.matrix_world.translation, s.paint_object.matrix_world.translation)
        z = np.empty(len(me.vertices) * 3, np.float32)
        me.attributes["position"].data.foreach_get("vector", z)
        z = z[2::3].reshape(17, 17)
        assert np.isfinite(z).all() and 0.0 <= z.min() and z.max() <= 30.0
        assert np.isclose(ob.dimensions.x, 40.0 * 31 / 32, rtol=1e-4)  # vertices on pixel centres
        if not meta["untrained"]:
            assert z[:, 9:].mean() > z[:, :8].mean()  # mountains (east) above water (west)
        # One undo step takes the whole terrain away again.
        bpy.ops.ed.undo()
        assert scene_request.TERRAIN_NAME not in bpy.data.objects
        assert data_snapshot() == before
        assert bpy.context.object.mode == "TEXTURE_PAINT"  # still painting, as before Generate


def _vertex_heights(ob) -> np.ndarray:
    co = np.empty(len(ob.data.vertices) * 3, np.float32)
    ob.data.vertices.foreach_get("co", co)
    return co[2::3].copy()


def test_regenerate_replaces_and_variation_changes_seed(scene):
    s = scene.terrain_gan
    paint_half_mountains(s.paint_image)
    with view3d_context():
        bpy.ops.terrain.generate()
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        first_seed = ob[build.META_KEY]["seed"]
        first_heights = _vertex_heights(ob)
        bpy.ops.object.mode_set(mode="OBJECT")
        for o in bpy.context.view_layer.objects:
            o.select_set(False)
        bpy.context.view_layer.objects.active = ob
        n_objects, n_meshes = len(bpy.data.objects), len(bpy.data.meshes)
        assert bpy.ops.terrain.regenerate() == {"FINISHED"}
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        assert ob[build.META_KEY]["seed"] == first_seed
        np.testing.assert_array_equal(_vertex_heights(ob), first_heights)  # same map + seed = same terrain
        assert (len(bpy.data.objects), len(bpy.data.meshes)) == (n_objects, n_meshes)  # replaced, not added
        bpy.context.view_layer.objects.active = ob
        assert bpy.ops.terrain.variation() == {"FINISHED"}
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        assert ob[build.META_KEY]["seed"] != first_seed and s.seed == ob[build.META_KEY]["seed"]
        # A variation is another terrain, not only another number in the metadata.
        varied = _vertex_heights(ob)
        assert varied.shape == first_heights.shape
        assert np.abs(varied - first_heights).max() > 1e-3 * max(np.ptp(first_heights), 1e-6)
        assert len(bpy.data.objects) == n_objects
        orphans = [i.name for i in bpy.data.images if i.users == 0 and i.name.startswith("Terrain")]
        assert orphans == []  # the old images went with the old object


def test_displace_mode(scene):
    s = scene.terrain_gan
    s.mesh_mode, s.mesh_resolution, s.height_min_m, s.height_max_m = "DISPLACE", 9, 2.0, 12.0
    with view3d_context():
        assert bpy.ops.terrain.generate() == {"FINISHED"}
    ob = bpy.data.objects[scene_request.TERRAIN_NAME]
    assert len(ob.data.vertices) == 81 and all(np.isclose(v.co.z, 2.0) for v in ob.data.vertices)
    mod = ob.modifiers[0]
    assert mod.type == "DISPLACE" and mod.texture.image is not None and np.isclose(mod.strength, 10.0)
    assert mod.texture.image.is_float and mod.texture_coords == "UV"


def _evaluated_z(ob) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    ev = ob.evaluated_get(dg)
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    return co.reshape(-1, 3)[:, 2]


def test_exported_exr_drives_the_displace_modifier_like_the_terrain(scene, tmp_path):
    # The one-channel EXR a user exports, loaded as a user would, displaces the grid as the terrain's own
    # height image does.
    s = scene.terrain_gan
    s.mesh_mode, s.mesh_resolution, s.height_min_m, s.height_max_m = "DISPLACE", 17, 10.0, 110.0
    paint_half_mountains(s.paint_image)
    with view3d_context():
        assert bpy.ops.terrain.generate() == {"FINISHED"}
        bpy.ops.object.mode_set(mode="OBJECT")
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        bpy.context.view_layer.objects.active = ob
        s.export_obj = s.export_glb = s.export_splats = s.export_texture = False
        assert bpy.ops.terrain.export(directory=str(tmp_path)) == {"FINISHED"}
    z_terrain = _evaluated_z(ob)
    assert z_terrain.max() - z_terrain.min() > 1.0  # the relief is there
    mod = ob.modifiers[0]
    mod.texture.image = bpy.data.images.load(str(tmp_path / "height.exr"))
    mod.strength, mod.mid_level = 1.0, 0.0  # the EXR holds metres; the flat grid sits at height_min_m
    z_exr = _evaluated_z(ob) - 10.0
    np.testing.assert_allclose(z_exr, z_terrain, atol=1e-3)


def test_errors_report_and_change_nothing(scene, tmp_path):
    s = scene.terrain_gan
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"garbage" * 50)
    wrong = tmp_path / "model.txt"
    wrong.write_text("x")
    cases = [
        (dict(model_path=str(tmp_path / "missing.onnx")), "not found"),
        (dict(model_path=str(corrupt)), "corrupt.onnx"),
        (dict(model_path=str(wrong)), ".onnx or .safetensors"),
        (dict(height_min_m=50.0, height_max_m=10.0), "max > min"),
    ]
    with view3d_context():
        for settings, match in cases:
            saved = {k: getattr(s, k) for k in settings}
            for k, v in settings.items():
                setattr(s, k, v)
            before = data_snapshot()
            with pytest.raises(RuntimeError, match=match):
                bpy.ops.terrain.generate()
            assert data_snapshot() == before, settings
            for k, v in saved.items():
                setattr(s, k, v)
        # No paint image at all.
        s.paint_image = None
        scene.tool_settings.image_paint.canvas = None
        before = data_snapshot()
        with pytest.raises(RuntimeError, match="no map image"):
            bpy.ops.terrain.generate()
        assert data_snapshot() == before


def test_build_failure_rolls_back(scene, monkeypatch):
    s = scene.terrain_gan
    req = scene_request.request_from_scene(bpy.context)
    outcome = pipeline.run_generation(req)
    before = data_snapshot()

    def boom(*a, **k):
        raise RuntimeError("material failed")

    monkeypatch.setattr(build, "terrain_material", boom)  # fail half-way: images and mesh already made
    with pytest.raises(RuntimeError, match="material failed"):
        build.build_terrain(outcome, build.BuildOptions(), scene)
    assert data_snapshot() == before
    assert s.paint_image is not None


def test_cancel_leaves_scene_unchanged(scene):
    from blender_addon.core.jobs import Job

    req = scene_request.request_from_scene(bpy.context)
    before = data_snapshot()
    job = Job(lambda progress, cancel: pipeline.run_generation(req, progress, cancel))
    job.cancel()  # cancelled before the generator runs its first tile
    job.start()
    assert job.wait(60)
    assert isinstance(job.error, pipeline.GenerationCancelled) and job.result is None
    assert data_snapshot() == before
    assert bpy.ops.terrain.cancel_generation.poll() is False  # nothing running in the UI


def test_live_preview_debounces_and_replaces(scene, monkeypatch):
    s = scene.terrain_gan
    s.live_resolution = 32
    monkeypatch.setattr(live, "DEBOUNCE_S", 0.0)
    live._live["debouncer"] = live.Debouncer(0.0)
    with view3d_context():
        s.live_mode = True  # starts the timer (never fires in background mode); drive it by hand
        try:
            live._live["debouncer"] = live.Debouncer(0.0)
            live.step(bpy.context)  # first sight of the map
            live.step(bpy.context)  # unchanged: start a preview
            job = live.current_job()
            assert job is not None and job.wait(60)
            live.step(bpy.context)  # finished: build it
            prev = bpy.data.objects.get(scene_request.PREVIEW_NAME)
            assert prev is not None and prev[build.META_KEY]["preview"]
            plane = s.paint_object.matrix_world.translation
            assert np.isclose(prev.matrix_world.translation.x - plane.x, 40.0 * 1.1)  # beside, east
            assert len(prev.data.vertices) == live.PREVIEW_MESH**2
            assert live.current_job() is None
            live.step(bpy.context)  # same map: no new job
            assert live.current_job() is None
            paint_half_mountains(s.paint_image)
            live.step(bpy.context)
            live.step(bpy.context)
            job = live.current_job()
            assert job is not None and job.wait(60)
            live.step(bpy.context)
            assert [o.name for o in bpy.data.objects if o.get(build.META_KEY)] == [scene_request.PREVIEW_NAME]
        finally:
            s.live_mode = False


def test_export_writes_all_files(scene, tmp_path, monkeypatch):
    s = scene.terrain_gan
    s.height_min_m, s.height_max_m = 10.0, 110.0
    paint_half_mountains(s.paint_image)
    with view3d_context():
        bpy.ops.terrain.generate()
        bpy.ops.object.mode_set(mode="OBJECT")
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        bpy.context.view_layer.objects.active = ob
        s.export_obj = s.export_glb = True
        assert bpy.ops.terrain.export(directory=str(tmp_path)) == {"FINISHED"}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            "height.png",
            "height.exr",
            "texture.png",
            "splat_0.png",
            "splat_1.png",
            "terrain.obj",
            "terrain.mtl",
            "terrain.glb",
            "meta.json",
        ]
    )
    Image = pytest.importorskip("PIL.Image")
    h16 = np.array(Image.open(tmp_path / "height.png"))
    assert h16.dtype == np.uint16 and h16.shape == (32, 32)
    assert exr_channels(tmp_path / "height.exr") == ["Y"]  # one channel, not three identical ones
    exr = bpy.data.images.load(str(tmp_path / "height.exr"))
    h_exr = build.image_array(exr)[..., 0]
    h_img = build.image_array(bpy.data.images[ob[build.META_KEY]["height_image"]])[..., 0]
    assert np.allclose(h_exr, h_img) and 10.0 <= h_exr.min() and h_exr.max() <= 110.0
    assert np.allclose((h16 / 65535.0) * 100.0 + 10.0, h_exr, atol=0.01)
    s0 = np.array(Image.open(tmp_path / "splat_0.png"))
    s1 = np.array(Image.open(tmp_path / "splat_1.png"))
    assert (s0.astype(int).sum(-1) + s1.astype(int).sum(-1) == 255).all()
    assert s0[5, 2, 0] == 255 and s1[5, 29, 1] == 255  # water west, mountains east
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == ob[build.META_KEY]["seed"]

    # A second export that fails while writing (the disk fills up during the meshes, after the images)
    # leaves the first set as it was, byte for byte, and no staging folder or lock behind.
    from blender_addon.blender import export_ops as export_mod

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(context, ob, out_dir, **kw):
        (out_dir / "terrain.obj").write_bytes(b"v 0 0")
        raise OSError(28, "No space left on device")

    s.height_min_m, s.height_max_m = 500.0, 900.0
    monkeypatch.setattr(export_mod, "export_mesh_files", disk_full)
    with view3d_context():
        bpy.context.view_layer.objects.active = ob
        with pytest.raises(RuntimeError, match="Export failed: .*No space left"):
            bpy.ops.terrain.export(directory=str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_sync_generate_runs_in_worker_thread_safe_code():
    """run_generation never touches bpy: it runs in a plain thread while the main thread waits."""
    lab = np.zeros((16, 16), np.uint8)
    out = {}
    t = threading.Thread(
        target=lambda: out.setdefault(
            "r", pipeline.run_generation(pipeline.GenerateRequest(labels=lab, resolution=32))
        )
    )
    t.start()
    t.join(60)
    assert out["r"].grid.num_vertices == 32 * 32


class FakeEvent:
    def __init__(self, type_, value="NOTHING"):
        self.type, self.value = type_, value


class ModalDriver:
    """The modal half of terrain.generate driven by hand: background mode runs no event loop, so the test
    plays the window manager (timer events, Esc) against the operator's own methods."""

    seed_override = -1
    target = ""
    _start = generate.TERRAIN_OT_generate._start
    _request = generate.TERRAIN_OT_generate._request
    modal = generate.TERRAIN_OT_generate.modal
    _cleanup = generate.TERRAIN_OT_generate._cleanup
    _report_done = generate.TERRAIN_OT_generate._report_done

    def __init__(self, context):
        self.reports = []
        self._req = self._request(context)
        self._start(context)

    def report(self, kind, msg):
        self.reports.append((sorted(kind)[0], msg))

    def run(self, context, first_event=None, timeout=120):
        import time

        if first_event is not None:
            assert self.modal(context, first_event) == {"RUNNING_MODAL"}
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            ret = self.modal(context, FakeEvent("TIMER"))
            if ret != {"PASS_THROUGH"}:
                return ret
            time.sleep(0.05)
        raise AssertionError("modal generate did not finish")


def test_modal_generate_polls_worker_and_builds(scene):
    scene.terrain_gan.seed = 11
    with view3d_context():
        before = data_snapshot()
        drv = ModalDriver(bpy.context)
        assert generate.state["job"] is drv._job and not bpy.ops.terrain.generate.poll()  # one at a time
        assert drv.run(bpy.context) == {"FINISHED"}
        assert generate.state["job"] is None and drv._timer is None
        assert scene_request.TERRAIN_NAME in bpy.data.objects and data_snapshot() != before
        assert any(k == "INFO" and "seed 11" in m for k, m in drv.reports)


def test_modal_generate_escape_cancels_and_changes_nothing(scene):
    with view3d_context():
        before = data_snapshot()
        drv = ModalDriver(bpy.context)
        assert drv.run(bpy.context, first_event=FakeEvent("ESC", "PRESS")) == {"CANCELLED"}
        assert drv._job.cancelled and data_snapshot() == before
        assert any(k == "WARNING" and "cancelled" in m for k, m in drv.reports)
        assert generate.state["job"] is None


def test_export_refuses_blend_relative_folder_in_unsaved_file(scene, tmp_path):
    with view3d_context():
        bpy.ops.terrain.generate()
        bpy.ops.object.mode_set(mode="OBJECT")
        bpy.context.view_layer.objects.active = bpy.data.objects[scene_request.TERRAIN_NAME]
        scene.terrain_gan.export_dir = "//terrain_export/"
        assert not bpy.data.filepath
        with pytest.raises(RuntimeError, match="save it first"):
            bpy.ops.terrain.export()


def test_live_mode_resumes_after_loading_a_file(scene, tmp_path):
    scene.terrain_gan.live_mode = True
    try:
        path = tmp_path / "live.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
        live.stop()
        bpy.ops.wm.open_mainfile(filepath=str(path))
        assert bpy.context.scene.terrain_gan.live_mode
        assert live._live["running"] and bpy.app.timers.is_registered(live._tick)
    finally:
        bpy.context.scene.terrain_gan.live_mode = False
    assert not bpy.app.timers.is_registered(live._tick)


def test_live_preview_with_bad_settings_says_why_once(scene):
    s = scene.terrain_gan
    s.height_min_m, s.height_max_m = 10.0, 5.0
    s.live_mode = True
    try:
        live._live["debouncer"] = live.Debouncer(0.0)
        live._live["last_error"] = ""
        with view3d_context():
            live.step(bpy.context)
            live.step(bpy.context)
        assert live.current_job() is None and "max > min" in live.status()
    finally:
        s.live_mode = False
        live._live["last_error"] = ""
