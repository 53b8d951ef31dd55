"""The training program end to end on a tiny procedural data set (CPU, tiny preset, 64x64 crops)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train_helpers import assert_same_training_state, build_procedural
from training import checkpoint as ckpt
from training.train import main as train_main
from training.train_config import load_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "workers=0", "--set", "sample_count=2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return build_procedural(tmp_path_factory.mktemp("procedural"), count=8, seed=0)


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory) -> Path:
    """4 steps with samples, checkpoints and the export: shared by several tests.

    The export is safetensors only: the ONNX export (torch.export + dynamo) alone takes 30+ s on this
    machine; the runtime's own tests cover it, and the same call with onnx=True is used by real runs.
    """
    run = tmp_path_factory.mktemp("run") / "full"
    rc = train_main(
        [
            "--config",
            "tiny",
            "--data",
            str(tiny_data),
            "--out",
            str(run),
            "--set",
            "sample_every=2",
            "--set",
            "export_onnx=false",
            *FAST,
        ]
    )
    assert rc == 0
    return run


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_a_run_writes_config_stats_samples_checkpoint_and_export(full_run):
    cfg = load_config(str(full_run / "config.toml"))
    assert cfg == load_config("tiny", ["workers=0", "sample_count=2", "sample_every=2", "export_onnx=false"])
    rows = _rows(full_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert np.isfinite(r["d_total"]) and r["d_total"] >= 0 and "dg_ratio" in r and "d_fake_flip" in r
    assert rows[0]["g_on"] == 1.0 and rows[0]["g_adv"] is not None
    state = torch.load(full_run / "latest.pt", weights_only=True)  # tensors and plain types only
    assert state["step"] == 4 and state["format"] == ckpt.FORMAT
    assert state["d_updates"] == 4 and 1 <= state["g_updates"] <= 4
    samples = sorted(p.name for p in (full_run / "samples").glob("*.png"))
    assert samples == ["step_0000002.png", "step_0000004.png"]
    from PIL import Image

    with Image.open(full_run / "samples" / "step_0000004.png") as im:
        assert im.size == (5 * 66 + 2, 2 * 66 + 2)  # 5 columns x 2 maps of 64 px with 2 px gaps
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["ranks_agree"] and summary["world"] == 1

    from terrain_core.runtime import TerrainGenerator

    assert not (full_run / "export" / "model.onnx").exists()
    for name in ("model.safetensors",):
        gen = TerrainGenerator.load(full_run / "export" / name)
        prov = gen.info["provenance"]
        assert prov["preset"] == "tiny" and prov["steps"] == 4 and prov["ema"] is True
        labels = np.zeros((64, 64), np.uint8)
        labels[:, 32:] = 5
        res = gen.generate(labels, seed=3)
        assert res.texture.shape == (64, 64, 3) and np.isfinite(res.height).all()
    # The export is the EMA generator, not the raw one.
    from safetensors.torch import load_file

    exported = load_file(str(full_run / "export" / "model.safetensors"))
    key = next(k for k in state["ema"] if k in exported and state["ema"][k].numel() > 4)
    torch.testing.assert_close(exported[key].float(), state["ema"][key].float())


def test_resume_repeats_the_uninterrupted_run(tiny_data, tmp_path):
    # 5 training maps, batch 2 -> 2 steps per epoch: interrupt mid-epoch (3), resume across two more (6).
    common = ["--config", "tiny", "--data", str(tiny_data), *FAST]
    common += ["--set", "export=false", "--set", "sample_count=0"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert train_main([*common, "--out", str(a), "--max-steps", "6"]) == 0
    assert train_main([*common, "--out", str(b), "--max-steps", "3"]) == 0
    assert ckpt.load(b / "latest.pt")["step"] == 3
    assert train_main([*common, "--out", str(b), "--max-steps", "6", "--resume"]) == 0
    sa, sb = ckpt.load(a / "latest.pt"), ckpt.load(b / "latest.pt")
    assert sa["step"] == sb["step"] == 6
    assert_same_training_state(sa, sb)
    assert (sa["g_on"], sa["g_updates"], sa["decisions_hex"]) == (
        sb["g_on"],
        sb["g_updates"],
        sb["decisions_hex"],
    )
    keys = ("d_total", "d_real", "d_fake", "d_fake_flip", "g_on")
    ra = {r["step"]: r for r in _rows(a)}
    rb = {r["step"]: r for r in _rows(b)}
    for step in (4, 5, 6):
        assert [ra[step][k] for k in keys] == [rb[step][k] for k in keys]


def test_dry_run_export_only_and_bad_arguments(full_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "dry"
    assert train_main(["--config", "tiny", "--data", str(tiny_data), "--out", str(out), "--dry-run"]) == 0
    assert 'model = "tiny"' in capsys.readouterr().out and not out.exists()
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "latest.pt").write_bytes((full_run / "latest.pt").read_bytes())
    (exp / "config.toml").write_text((full_run / "config.toml").read_text())
    assert train_main(["--out", str(exp), "--export-only", "--set", "export_onnx=false"]) == 0
    assert (exp / "export" / "model.safetensors").is_file() and not (exp / "export" / "model.onnx").exists()
    # The export made later records the run as the run's own export did: its preset, its perceptual loss
    # and its config (not the export-only trainer's, which skips the perceptual network).
    from terrain_core.runtime import read_model_metadata

    ran, later = (read_model_metadata(r / "export" / "model.safetensors") for r in (full_run, exp))
    ran, later = ran["provenance"], later["provenance"]
    assert later["preset"] == ran["preset"] == "tiny" and later["perceptual"] == ran["perceptual"] != "off"
    assert later["train_config"]["perceptual"] == ran["train_config"]["perceptual"] != "off"
    capsys.readouterr()
    assert (
        train_main(["--config", "tiny", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    )
    assert "is not a folder" in capsys.readouterr().err
    assert (
        train_main(["--config", "tiny", "--data", str(tiny_data), "--out", str(tmp_path / "r2"), "--resume"])
        == 2
    )
    assert "no checkpoint" in capsys.readouterr().err
    assert (
        train_main(
            ["--config", "tiny", "--data", str(tiny_data), "--out", str(tmp_path / "r3"), "--set", "x=1"]
        )
        == 2
    )
    assert "unknown training config keys" in capsys.readouterr().err


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    ckpt.atomic_save({"format": ckpt.FORMAT, "step": 1, "w": torch.ones(1000)}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch.save fails half-way through an unpicklable value
        ckpt.atomic_save({"format": ckpt.FORMAT, "step": 2, "w": torch.ones(10**6), "bad": lambda: 0}, path)
    assert ckpt.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temp file left behind


def test_killing_the_process_mid_save_never_corrupts_latest(tmp_path):
    # A child saves a 24 MB checkpoint over and over; it is killed (SIGKILL) at several moments.
    script = (
        "import sys, torch\n"
        "from training.checkpoint import atomic_save, FORMAT\n"
        "w = torch.randn(6 * 10**6)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    atomic_save({'format': FORMAT, 'step': i, 'w': w}, sys.argv[1])\n"
    )
    path = tmp_path / "latest.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    steps = []
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
        try:
            t0 = time.time()
            while not path.exists() and time.time() - t0 < 60:
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            proc.kill()
            proc.wait()
        state = ckpt.load(path)  # always a complete file
        assert state["w"].numel() == 6 * 10**6
        steps.append(state["step"])
    assert all(s >= 1 for s in steps)


def test_evaluate_reports_every_metric_in_range(full_run, tiny_data, tmp_path):
    from training.evaluate import main as evaluate_main

    out = tmp_path / "eval.json"
    args = ["--model", str(full_run / "export"), "--data", str(tiny_data), "--out", str(out)]
    assert evaluate_main([*args, "--size", "64", "--seeds", "2", "--classifier-steps", "150"]) == 0
    r = json.loads(out.read_text())
    assert {"segmentation", "shadow_leak", "height", "diversity", "maps", "split"} <= set(r)
    for part in ("generated", "real_ceiling"):
        s = r["segmentation"][part]
        assert 0 <= s["miou"] <= 1 and 0 <= s["pixel_accuracy"] <= 1
        assert all(0 <= v <= 1 for v in s["per_class_iou"].values())
    # Procedural classes differ in colour: the classifier must beat chance (1/7) on real maps.
    assert r["segmentation"]["real_ceiling"]["pixel_accuracy"] > 0.3
    leak = r["shadow_leak"]
    for k in (
        "texture_nw",
        "texture_ne",
        "texture_se",
        "texture_sw",
        "generated_shaded_nw",
        "real_shaded_nw",
    ):
        assert -1 <= leak[k] <= 1
    # The references bracket the metric: baked NW shading correlates with a NW hill-shade, albedo does not.
    assert leak["albedo_nw"] is not None and leak["real_shaded_nw"] > leak["albedo_nw"] + 0.2
    h = r["height"]
    assert h["spectral_slope"]["wasserstein"] >= 0 and h["slope_angle"]["wasserstein"] >= 0
    assert np.isfinite(h["spectral_slope"]["real_mean"]) and h["height_value_wasserstein"] >= 0
    assert set(h["per_class"]) <= {"water", "plains", "forest", "hills", "desert", "mountains", "highland"}
    assert r["diversity"]["texture_std"] > 0 and r["diversity"]["height_std"] > 0


@pytest.mark.slow
def test_two_process_gloo_run_stays_in_step(tmp_path):
    data = build_procedural(tmp_path / "data", count=8, seed=1)
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.train", "--config", "tiny", "--data", str(data), "--out", str(run),
        "--device", "cpu", "--max-steps", "4", "--set", "export=false", "--set", "sample_count=0",
        "--set", "batch_size=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world"] == 2 and summary["steps"] == 4
    ranks = summary["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients were averaged: identical weights
    assert ranks[0]["decisions"] == ranks[1]["decisions"]  # the same G on/off at every step
    # The untrained D's loss (~4) switched G off after the first step, so the decision was exercised.
    assert summary["g_updates"] < summary["d_updates"] == 4
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # rank 0 alone writes


def test_resume_forgets_stats_logged_after_the_checkpoint(tmp_path):
    from training.train import drop_stats_after

    path = tmp_path / "stats.jsonl"
    path.write_text("".join(json.dumps({"step": s, "d_total": 1.0}) + "\n" for s in (1, 2, 3, 4, 5)))
    drop_stats_after(path, 3)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]


def test_warm_start_loads_matching_tensors_and_keeps_the_rest_fresh(full_run, tiny_data, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from training.nets import TrainGenerator, warm_start

    model = full_run / "export" / "model.safetensors"
    saved = load_file(str(model))
    # Another shortcut branch width: those tensors cannot come from the file, everything else can.
    cfg = load_config("tiny", ["generator.spade_hidden=4"])
    torch.manual_seed(1)
    net = TrainGenerator(cfg.generator_config(), cfg.shadow_config())
    ema = TrainGenerator(cfg.generator_config(), cfg.shadow_config())
    ws = warm_start(net, str(model), ema)
    assert ws.loaded and ws.fresh and set(ws.fresh) == set(ws.unused)
    assert all("short_norm" in k for k in ws.fresh)
    for module in (net, ema):
        state = module.state_dict()
        for k in ws.loaded:
            assert torch.equal(state[k], saved[k]), k
        for k in ws.fresh:
            assert state[k].shape != saved[k].shape
    assert "kept fresh" in ws.summary()

    with pytest.raises(ValueError, match=r"not a \.safetensors model file; use model\.safetensors"):
        warm_start(net, str(full_run / "export" / "model.onnx"))
    with pytest.raises(ValueError, match="does not exist"):
        warm_start(net, str(tmp_path / "none.safetensors"))
    other = tmp_path / "other.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(other))
    with pytest.raises(ValueError, match="no terrain_core metadata"):
        warm_start(net, str(other))
    with pytest.raises(ValueError, match="no generator or shadow tensor"):
        warm_start(torch.nn.Linear(2, 2), str(model))

    # Through the trainer: the run logs what it loaded; a bad file is a clear error, exit 2.
    out = tmp_path / "warm"
    args = ["--config", "tiny", "--data", str(tiny_data), "--out", str(out), "--max-steps", "1", *FAST]
    args += ["--set", "export=false", "--set", f"init_from={model}"]
    assert train_main(args) == 0
    assert "warm start from" in capsys.readouterr().out
    assert 'init_from = "' in (out / "config.toml").read_text()
    bad = [*args[:5], str(tmp_path / "warm2"), *args[6:-1], f"init_from={other}"]
    assert train_main(bad) == 2
    assert "no terrain_core metadata" in capsys.readouterr().err


def test_model_grid_shows_map_outputs_render_and_real(full_run, tiny_data, tmp_path, capsys):
    from PIL import Image

    from training.model_grid import main as grid_main
    from training.model_grid import pick_maps

    # picking: the richest maps first, near-duplicates skipped
    a = np.zeros((4, 8, 8), np.uint8)
    a[1, :, :4], a[1, :, 4:] = 1, 2  # map 0: one class, map 1: two
    a[2] = a[1]  # a duplicate of map 1
    a[3, :4], a[3, 4:, :2] = 3, 4  # three classes
    assert pick_maps(a, 2) == [1, 3] and pick_maps(a, 3) == [0, 1, 3]

    out = tmp_path / "grid.png"
    model = full_run / "export" / "model.safetensors"
    args = ["--model", str(model), "--data", str(tiny_data), "--out", str(out), "--maps", "2"]
    assert grid_main([*args, "--size", "64", "--samples", "2", "--split", ""]) == 0
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    # 2 rows of 64 px under an 18 px title strip; six columns, the render 8:5 wide
    assert img.shape[0] == 18 + 2 * (64 + 4) + 4
    assert img.shape[1] == 5 * 64 + 102 + 7 * 4
    render = img[22 : 22 + 64, 4 + 4 * 68 : 4 + 4 * 68 + 102]
    assert render.std() > 3  # a real picture, not an empty frame
    assert grid_main([*args[:2], "--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err
