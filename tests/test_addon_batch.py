"""The headless batch script through a subprocess, as the README's main job runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")

from conftest import exr_channels  # noqa: E402

from blender_addon.core.png import write_png  # noqa: E402
from terrain_core.labels import PALETTE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "blender_addon" / "batch.py"


def run_batch(args, tmp_path, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = ""  # the script finds the project by its own location
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


FLAT = np.full((16, 16), 1, np.uint8)  # plains


def map_folder(tmp_path: Path, **maps: np.ndarray) -> Path:
    """tmp_path/maps holding NAME.png in the class colours for every NAME=labels given."""
    folder = tmp_path / "maps"
    folder.mkdir()
    for name, labels in maps.items():
        write_png(folder / f"{name}.png", PALETTE[labels])
    return folder


def test_batch_generates_exports_renders_and_survives_a_bad_map(tmp_path):
    lab = np.zeros((24, 32), np.uint8)
    lab[:, 16:] = 5
    lab[:4] = 2
    maps = map_folder(tmp_path, tiny=lab)
    (maps / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    r = run_batch(
        [
            "--input",
            str(maps),
            "--out",
            str(out),
            "--render",
            "--show-map",
            "--render-size",
            "160x100",
            "--samples",
            "4",
            "--resolution",
            "32",
            "--formats",
            "blend,obj,glb,png,exr",
            "--contact-sheet",
            "--height-m",
            "5,45",
        ],
        tmp_path,
    )
    assert r.returncode == 1, r.stdout + r.stderr  # one map failed
    assert "[FAIL] broken.png" in r.stderr and "[ok]   tiny.png seed 0" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["failed"] == 1 and not summary["ok"]
    bad = next(e for e in summary["results"] if not e["ok"])
    assert "broken.png" in bad["map"] and bad["error"]
    good = next(e for e in summary["results"] if e["ok"])
    d = Path(good["out_dir"])
    assert d == out / "tiny" / "seed_0"
    for name in (
        "texture.png",
        "terrain.png",
        "height.png",
        "height.exr",
        "splat_0.png",
        "splat_1.png",
        "terrain.obj",
        "terrain.mtl",
        "terrain.glb",
        "terrain.blend",
        "preview.png",
        "meta.json",
    ):
        assert (d / name).is_file() and (d / name).stat().st_size > 0, name
    assert good["generation_size"] == [32, 24] and good["mesh_vertices"] == 32 * 24
    assert good["mesh_reduced"] is False  # small maps keep one vertex per pixel
    assert exr_channels(d / "height.exr") == ["Y"]
    lo, hi = good["height_m_min_max"]
    assert 5.0 <= lo <= hi <= 45.0
    assert {"generate", "render", "write_images"} <= set(good["timings_s"])
    Image = pytest.importorskip("PIL.Image")
    prev = np.asarray(Image.open(d / "preview.png").convert("RGB")).astype(float)
    assert prev.shape == (100, 160, 3)
    # The class map stands west (left) of the terrain: its water blue shows there, the terrain (right of
    # the middle) differs from the sky in the corners, pixel by pixel.
    water = np.array([17, 141, 215], float)
    left, right = prev[:, :80].reshape(-1, 3), prev[30:70, 90:140].reshape(-1, 3)
    assert (np.abs(left - water).max(-1) < 25).sum() > 20
    sky = prev[:5, -5:].reshape(-1, 3).mean(0)
    # per pixel: the mean colour of a light-water, dark-mountain terrain can come out near the sky's
    assert (np.abs(right - sky).max(-1) > 10).mean() > 0.3
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] >= 160 and sheet.size[1] >= 100


def test_batch_rejects_bad_arguments(tmp_path):
    r = run_batch(["--input", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")], tmp_path, timeout=120)
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    r = run_batch(
        ["--input", str(tmp_path), "--out", str(tmp_path / "o"), "--formats", "png,fbx"],
        tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and "unknown format" in r.stderr


def test_a_second_run_into_the_same_folder_replaces_the_blend_without_backups(tmp_path):
    maps = map_folder(tmp_path, flat=FLAT)
    out = tmp_path / "out"
    args = ["--input", str(maps), "--out", str(out), "--formats", "blend", "--resolution", "16"]
    mtimes = []
    for _ in range(2):
        r = run_batch(args, tmp_path, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        d = out / "flat" / "seed_0"
        mtimes.append((d / "terrain.blend").stat().st_mtime_ns)
    names = sorted(p.name for p in d.iterdir())
    assert "terrain.blend" in names
    assert not [n for n in names if n.endswith(".blend1") or n.startswith(".terrain.")], names
    assert mtimes[1] >= mtimes[0]


# ----------------------------------------------------------------------------------------- issue 13 cases


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_bad_out_and_bad_numbers_exit_2_with_one_line_before_any_work(tmp_path):
    maps = map_folder(tmp_path, m=FLAT)
    f = tmp_path / "file"
    f.write_text("mine")
    r = run_batch(["--input", str(maps), "--out", str(f)], tmp_path, timeout=120)
    assert r.returncode == 2 and "exists and is not a folder" in one_error_line(r.stderr)
    assert f.read_text() == "mine"
    for bad, pattern in (
        (["--resolution", "-5"], "--resolution must be at least 8 (or 0)"),
        (["--tile", "-7"], "--tile must be at least -1"),
        (["--size-m", "nan"], "--size-m must be a positive number"),
        (["--seeds", "1,x"], "--seeds needs non-negative integers"),
    ):
        r = run_batch(["--input", str(maps), "--out", str(tmp_path / "o"), *bad], tmp_path, timeout=120)
        assert r.returncode == 2 and pattern in one_error_line(r.stderr), r.stderr
    assert not (tmp_path / "o").exists()


def test_maps_that_are_too_small_truncated_or_too_large_fail_alone_with_one_line(tmp_path):
    from bad_images import huge_header_png, short_png

    maps = map_folder(tmp_path, good=FLAT, one=np.zeros((1, 1), np.uint8), odd=np.zeros((13, 7), np.uint8))
    short_png(maps / "short.png", PALETTE[4], 64, 512, rows=64)
    huge_header_png(maps / "huge.png", 20000, 20000)
    out = tmp_path / "out"
    r = run_batch(
        ["--input", str(maps), "--out", str(out), "--formats", "png", "--resolution", "16"], tmp_path
    )
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads((out / "summary.json").read_text())
    errors = {Path(e["map"]).name: e["error"] for e in summary["results"] if not e["ok"]}
    assert set(errors) == {"one.png", "odd.png", "short.png", "huge.png"}
    assert "too small (1x1" in errors["one.png"] and "too small (7x13" in errors["odd.png"]
    assert "holds 64 of 512 rows" in errors["short.png"] and "too large (20000x20000" in errors["huge.png"]
    assert all("\n" not in e for e in errors.values()) and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good", "summary.json"]  # nothing of the failed maps


def test_a_failed_rerun_keeps_the_earlier_set_and_a_busy_folder_is_refused(tmp_path):
    maps = map_folder(tmp_path, flat=FLAT)
    out = tmp_path / "out"
    args = ["--input", str(maps), "--out", str(out), "--formats", "blend,obj,png", "--resolution", "16"]
    r = run_batch(args, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = out / "flat" / "seed_0"
    # A re-run at another height range whose commit cannot place one file: every earlier file stays as it
    # was (terrain.obj used to be at the new range while meta.json and terrain.blend kept the old one).
    (d / "terrain.mtl").unlink()
    (d / "terrain.mtl").mkdir()
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    # A killed earlier run's staging folder, which this run must remove.
    (d / ".terrain-partial-999999-dead" / "new").mkdir(parents=True)
    r = run_batch([*args, "--height-m", "100,300"], tmp_path)
    assert r.returncode == 1 and "in the way" in r.stderr, r.stdout + r.stderr
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and "\n" not in summary["results"][0]["error"]
    # Another live run holds the folder: refused at once, before any work, and nothing changes.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": os.uname().nodename, "time": 1e12, "id": "x"}
        (out / ".terrain-output.lock").write_text(json.dumps(lock))
        summary_before = (out / "summary.json").read_bytes()
        r = run_batch(args, tmp_path, timeout=120)
        assert r.returncode == 2 and "in use by another run" in one_error_line(r.stderr)
        assert (out / "summary.json").read_bytes() == summary_before
    finally:
        holder.kill()
        holder.wait()


def test_batch_erosion_writes_masks_and_rejects_a_bad_level(tmp_path):
    lab = np.zeros((32, 32), np.uint8)
    lab[:, 12:] = 3
    lab[6:26, 20:] = 5
    maps = map_folder(tmp_path, ridge=lab)
    out = tmp_path / "out"
    args = ["--input", str(maps), "--out", str(out), "--formats", "png", "--resolution", "32"]
    r = run_batch([*args, "--erosion", "medium"], tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run_dir = next(p.parent for p in out.rglob("meta.json") if p.parent != out)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["erosion"]["level"] == "medium" and meta["erosion"]["eroded_m3"] > 0
    assert {"flow.png", "deposition.png", "wear.png"} <= set(meta["files"])
    Image = pytest.importorskip("PIL.Image")
    flow = np.array(Image.open(run_dir / "flow.png"))
    assert flow.dtype == np.uint16 and flow.shape == (32, 32) and flow.max() >= 65534
    r = run_batch([*args, "--erosion", "extreme"], tmp_path, timeout=120)
    assert r.returncode == 2 and "--erosion" in r.stderr and "invalid choice" in r.stderr
