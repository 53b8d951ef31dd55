"""Erosion in the add-on, inside real Blender (the bpy 5.0.1 module, background mode): the Generate operator
erodes in its worker, cancels, undoes as one step; the mask material, live previews and export."""

from __future__ import annotations

import threading

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import addon_scene, data_snapshot, view3d_context  # noqa: E402

from blender_addon.blender import build, live, scene_request  # noqa: E402
from blender_addon.core import maps, pipeline  # noqa: E402


@pytest.fixture
def scene():
    """Factory settings, the add-on registered, a 48x48 paint plane: water west, mountains and hills east."""
    with addon_scene(48) as sc:
        s = sc.terrain_gan
        s.resolution, s.height_min_m, s.height_max_m, s.seed = 48, 0.0, 30.0, 3
        lab = np.zeros((48, 48), np.uint8)
        lab[:, 16:] = 3
        lab[8:40, 26:] = 5
        s.paint_image.pixels.foreach_set(maps.pixels_from_labels(lab))
        s.paint_image.update()
        yield sc
    bpy.ops.wm.read_factory_settings(use_empty=False)  # leave no settings behind for other test files


def heights(ob) -> np.ndarray:
    me = ob.data
    z = np.empty(len(me.vertices) * 3, np.float32)
    me.attributes["position"].data.foreach_get("vector", z)
    return z[2::3].reshape(48, 48)


def test_generate_with_erosion_mask_material_and_one_undo_step(scene):
    s = scene.terrain_gan
    with view3d_context():
        assert bpy.ops.terrain.generate() == {"FINISHED"}  # erosion off first, same seed
        bpy.ops.object.mode_set(mode="OBJECT")
        z_off = heights(bpy.data.objects[scene_request.TERRAIN_NAME])
        s.erosion = "STRONG"
        bpy.ops.ed.undo_push(message="erosion setting")
        before = data_snapshot()
        assert bpy.ops.terrain.generate() == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Generate Terrain")
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        meta = ob[build.META_KEY]
        assert meta["erosion"] == "strong"
        z = heights(ob)
        assert np.isfinite(z).all() and np.abs(z - z_off).max() > 0.01  # the relief was eroded
        assert np.array_equal(z[:, :14], z_off[:, :14])  # water (west) kept its height
        mask_name = str(meta["mask_image"])
        mask_img = bpy.data.images[mask_name]
        masks = build.image_array(mask_img)
        assert masks.shape == (48, 48, 4) and masks[..., 0].max() == pytest.approx(1.0)  # flow
        assert masks[..., 2].max() > 0  # wear
        nt = ob.active_material.node_tree
        assert any(n.type == "TEX_IMAGE" and n.image == mask_img for n in nt.nodes)
        bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
        assert bsdf.inputs["Base Color"].links[0].from_node.bl_idname == "ShaderNodeMix"
        assert bsdf.inputs["Roughness"].is_linked  # wet channels are glossier
        # One undo step takes the whole eroded terrain away again (the previous one comes back).
        bpy.ops.ed.undo()
        assert data_snapshot() == before
        assert mask_name not in bpy.data.images


def test_plain_material_option_keeps_the_masks_for_export(scene, tmp_path):
    s = scene.terrain_gan
    s.erosion, s.erosion_material = "LIGHT", False
    with view3d_context():
        assert bpy.ops.terrain.generate() == {"FINISHED"}
        bpy.ops.object.mode_set(mode="OBJECT")
        ob = bpy.data.objects[scene_request.TERRAIN_NAME]
        bpy.context.view_layer.objects.active = ob
        nt = ob.active_material.node_tree
        assert [n.type for n in nt.nodes].count("TEX_IMAGE") == 1  # the plain texture material
        assert not any(n.bl_idname == "ShaderNodeMix" for n in nt.nodes)
        assert bpy.ops.terrain.export(directory=str(tmp_path)) == {"FINISHED"}
        names = {p.name for p in tmp_path.iterdir()}
        assert {"flow.png", "deposition.png", "wear.png", "splat_0.png"} <= names
        Image = pytest.importorskip("PIL.Image")
        flow = np.array(Image.open(tmp_path / "flow.png"))
        assert flow.dtype == np.uint16 and flow.shape == (48, 48) and flow.max() >= 65534
        # removing the terrain removes its mask image too
        build.remove_terrain(ob)
        assert not any("erosion masks" in i.name for i in bpy.data.images)


def test_cancel_during_erosion_changes_nothing(scene):
    s = scene.terrain_gan
    s.erosion = "STRONG"
    req = scene_request.request_from_scene(bpy.context)
    assert req.erosion == "strong"
    before = data_snapshot()
    cancel = threading.Event()
    seen = []

    def progress(f):
        seen.append(f)
        if f > 0.9:  # erosion has started (0.9 .. 0.95 of the job)
            cancel.set()

    with pytest.raises(pipeline.GenerationCancelled):
        pipeline.run_generation(req, progress, cancel)
    assert any(0.9 < f < 0.95 for f in seen) and data_snapshot() == before


def test_modal_generate_with_erosion_escape_cancels(scene):
    from blender_addon.core.jobs import Job

    scene.terrain_gan.erosion = "MEDIUM"
    req = scene_request.request_from_scene(bpy.context)
    before = data_snapshot()
    job = Job(lambda progress, cancel: pipeline.run_generation(req, progress, cancel))
    job.cancel()
    job.start()
    assert job.wait(60)
    assert isinstance(job.error, pipeline.GenerationCancelled) and data_snapshot() == before


def test_live_preview_erodes_light_at_most(scene, monkeypatch):
    s = scene.terrain_gan
    s.erosion, s.live_resolution = "STRONG", 32
    monkeypatch.setattr(live, "DEBOUNCE_S", 0.0)
    with view3d_context():
        s.live_mode = True
        try:
            live._live["debouncer"] = live.Debouncer(0.0)
            live.step(bpy.context)
            live.step(bpy.context)
            job = live.current_job()
            assert job is not None and job.wait(60)
            assert live._live["req"].erosion == "light"
            live.step(bpy.context)
            prev = bpy.data.objects.get(scene_request.PREVIEW_NAME)
            assert prev is not None and prev[build.META_KEY]["erosion"] == "light"
        finally:
            s.live_mode = False


def test_bad_erosion_level_is_a_request_error():
    lab = np.zeros((16, 16), np.uint8)
    with pytest.raises(pipeline.RequestError, match="erosion must be one of"):
        pipeline.GenerateRequest(labels=lab, erosion="extreme").validated()
