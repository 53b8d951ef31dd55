"""The command line on real files: a good map writes every file; each bad input exits 2 with its own
message and leaves the output folder untouched. In-process through ``cli.main`` (fast) plus real
``python -m terrain_core`` subprocesses."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from terrain_core import cli  # noqa: E402
from terrain_core.config import ShadowConfig, preset  # noqa: E402
from terrain_core.labels import PALETTE, resize_nearest, rgb_from_labels  # noqa: E402
from terrain_core.model_export import export_model  # noqa: E402
from terrain_core.nn.inference import InferenceNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALL_FILES = {
    "texture.png",
    "terrain.png",
    "height.png",
    "height.tif",
    "splat_0.png",
    "splat_1.png",
    "terrain.obj",
    "terrain.mtl",
    "meta.json",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = InferenceNet(preset("tiny"), ShadowConfig())
    meta = {"name": "tiny-cli", "height_range_m": (-120.0, 880.0)}
    st, _ = export_model(net, tmp_path_factory.mktemp("model") / "tiny", metadata=meta, onnx=False)
    return st


@pytest.fixture(scope="module")
def map_png(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:40, 0:56]  # not multiples of 32: the runtime pads and crops
    lab = ((x // 8 + y // 10) % 7).astype(np.uint8)
    p = tmp_path_factory.mktemp("maps") / "map.png"
    Image.fromarray(rgb_from_labels(lab)).save(p)
    return p


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_generate_writes_every_file_with_the_right_sizes(tmp_path, model, map_png):
    out = tmp_path / "out"
    rc, stdout, err = run("generate", "--labels", map_png, "--out", out, "--model", model, "--seed", 5)
    assert rc == 0, err
    assert {p.name for p in out.iterdir()} == ALL_FILES
    for name, mode in (("texture.png", "RGB"), ("terrain.png", "RGB"), ("splat_0.png", "RGBA")):
        with Image.open(out / name) as im:
            assert (im.mode, im.size) == (mode, (56, 40))
    with Image.open(out / "height.png") as im:
        assert im.mode.startswith("I") and im.size == (56, 40)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 5 and meta["size"] == [56, 40] and meta["model"] == "tiny-cli"
    assert meta["height_range_m"] == [-120.0, 880.0]
    assert meta["inputs"]["labels"] == str(map_png.resolve())
    assert meta["model_info"]["path"] == str(model) and meta["model_info"]["runtime"] == "torch"
    assert meta["timings"]["generate"] > 0 and meta["obj"]["vertices"] == 56 * 40
    assert set(meta["files"]) == ALL_FILES - {"meta.json"}
    assert str(out.resolve()) in stdout and "terrain.obj" in stdout and "generate" in stdout
    assert meta["command"].startswith("python -m terrain_core generate --labels")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


def test_size_format_and_plus_one(tmp_path, model, map_png):
    out = tmp_path / "o"
    rc, _, err = run(
        "generate", "--labels", map_png, "--out", out, "--model", model, "-q",
        "--size", "64x48", "--format", "height16,obj,meta", "--plus-one", "--size-m", "640",
    )  # fmt: skip
    assert rc == 0, err
    assert {p.name for p in out.iterdir()} == {"height.png", "terrain.obj", "terrain.mtl", "meta.json"}
    with Image.open(out / "height.png") as im:
        assert im.size == (65, 49)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["inputs"]["size"] == [64, 48] and meta["inputs"]["labels_size"] == [56, 40]
    assert meta["plus_one"] and meta["cell_size_m"] == pytest.approx(10.0)
    assert meta["obj"]["vertices"] == 65 * 49
    rc, out_text, _ = run("generate", "--labels", map_png, "--out", out, "--model", model, "--format", "obj",
                          "--runtime", "torch")  # fmt: skip
    assert rc == 0 and "texture.png, which was not written" in out_text


def test_large_maps_get_a_reduced_mesh_and_the_summary_says_so(tmp_path, model, map_png, monkeypatch):
    monkeypatch.setattr(cli.outputs, "MESH_FULL_MAX_SIDE", 32)  # the 56x40 map counts as large
    monkeypatch.setattr(cli.outputs, "MESH_VERTEX_BUDGET", 300)
    rc, stdout, err = run("generate", "--labels", map_png, "--out", tmp_path / "a", "--model", model)
    assert rc == 0, err
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["obj"]["reduced"] and meta["obj"]["vertices"] <= 300 and meta["obj"]["step"] == 3
    assert "mesh: reduced to every 3rd sample, 20x14 of 56x40 vertices (--obj-step 1 for the full" in stdout
    for extra in (["--obj-step", "1"], ["--format", "obj,meta"]):  # the full mesh only when asked
        rc, stdout, err = run(
            "generate", "--labels", map_png, "--out", tmp_path / "b", "--model", model, *extra
        )  # fmt: skip
        assert rc == 0, err
        meta = json.loads((tmp_path / "b" / "meta.json").read_text())
        assert not meta["obj"]["reduced"] and meta["obj"]["vertices"] == 56 * 40 and "mesh:" not in stdout


def test_engine_unity_writes_raw16_at_its_size(tmp_path, model, map_png):
    out = tmp_path / "u"
    rc, stdout, err = run(
        "generate", "--labels", map_png, "--out", out, "--model", model, "--engine", "unity",
        "--format", "height16,raw16,meta", "--size-m", "560",
    )  # fmt: skip
    assert rc == 0, err
    assert {p.name for p in out.iterdir()} == {"height.png", "height.raw", "meta.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["files"]["height.raw"]["size"] == [65, 65] and "65x65 samples, Unity's" in stdout
    raw = np.fromfile(out / "height.raw", dtype="<u2").reshape(65, 65)
    with Image.open(out / "height.png") as im:
        np.testing.assert_array_equal(raw[::-1], np.array(im))
    assert meta["height_grid"]["cell_size_m"] == [560 / 64, 400 / 64]  # the 560 x 400 m extent is kept
    assert meta["engine_import"]["terrain_size_m"][0::2] == [560.0, 400.0]
    rc, _, err = run("generate", "--labels", map_png, "--out", tmp_path / "all", "--model", model,
                     "--format", "all", "-q")  # fmt: skip
    assert rc == 0 and {p.name for p in (tmp_path / "all").iterdir()} == ALL_FILES | {"height.raw"}


def test_resize_nearest_keeps_classes_and_proportions():
    lab = np.array([[0, 1], [2, 3]], np.uint8)
    big = resize_nearest(lab, 4, 6)
    assert big.shape == (4, 6) and set(np.unique(big)) == {0, 1, 2, 3}
    assert (big[:2, :3] == 0).all() and (big[2:, 3:] == 3).all()


def _bad_map(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "bad.png"
    if kind == "text":
        p.write_text("hello")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "1x1":
        Image.fromarray(PALETTE[None, :1]).save(p)
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(p)
        p.write_bytes(p.read_bytes()[:1500])
    elif kind == "noise":
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)).save(p)
    elif kind == "missing":
        pass
    return p


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("text", "not an image file"),
        ("empty", "empty"),
        ("1x1", "too small"),
        ("truncated", "corrupt or truncated"),
        ("noise", "far from the terrain palette"),
        ("missing", "no such file"),
    ],
)
def test_bad_maps_exit_2_and_write_nothing(tmp_path, model, kind, pattern):
    out = tmp_path / "out"
    rc, stdout, err = run("generate", "--labels", _bad_map(tmp_path, kind), "--out", out, "--model", model)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and pattern in err, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--size", "abc"], "WIDTHxHEIGHT"),
        (["--size", "4x4"], "8..16384"),
        (["--size", "20000x100"], "8..16384"),
        (["--format", "texture,glb"], "unknown format(s) glb"),
        (["--seed", "-1"], "--seed must be in"),
        (["--seed", str(2**31)], "--seed must be in 0..2147483647"),
        (["--tile", "-3"], "--tile must be in"),
        (["--threads", "0"], "--threads must be in"),
        (["--size-m", "5", "--cell-size", "2"], "not allowed with"),
        (["--overlap", "16"], "--overlap needs --tile"),
        (["--size", "16384x16384", "--tile", "0", "--max-memory", "100"], "without tiling needs about"),
        (["--tile", "0", "--max-memory", "0.001"], "use --tile"),
        (["--size", "16384", "--tile", "512", "--max-memory", "2"], "even in 512-pixel tiles"),
        (["--bogus"], "unrecognized arguments"),
        (["--runtime", "onnx"], "needs a .onnx model file"),
        (["--runtime", "tensorflow"], "invalid choice"),
        (["--engine", "godot"], "invalid choice"),
        (["--engine", "unity", "--plus-one"], "not allowed with"),
        (["--obj-step", "0"], "--obj-step must be in"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(tmp_path, model, map_png, extra, pattern):
    out = tmp_path / "out"
    rc, _, err = run("generate", "--labels", map_png, "--out", out, "--model", model, *extra)
    assert rc == 2 and pattern in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda d: d / "nope.onnx", "not found"),
        (lambda d: (d / "m.pt").write_bytes(b"x") and d / "m.pt", "unknown model file type"),
        (lambda d: (d / "m.onnx").write_bytes(os.urandom(300)) and d / "m.onnx", "not a readable ONNX"),
        (lambda d: (d / "m.safetensors").write_bytes(b"\x10" * 64) and d / "m.safetensors", "m.safetensors"),
    ],
)
def test_bad_model_files_exit_2(tmp_path, map_png, make, pattern):
    model = make(tmp_path)
    out = tmp_path / "out"
    rc, _, err = run("generate", "--labels", map_png, "--out", out, "--model", model)
    assert rc == 2 and pattern in err and "Traceback" not in err, err
    assert not out.exists()
    rc, _, err = run("info", "--model", model)
    assert rc == 2 and pattern in err


def test_failed_run_leaves_an_existing_output_folder_as_it_was(tmp_path, model, map_png):
    out = tmp_path / "out"
    rc, _, err = run("generate", "--labels", map_png, "--out", out, "--model", model, "-q", "--seed", 1)
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, _, err = run("generate", "--labels", _bad_map(tmp_path, "noise"), "--out", out, "--model", model)
    assert rc == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "file").write_text("x")
    rc, _, err = run("generate", "--labels", map_png, "--out", tmp_path / "file", "--model", model)
    assert rc == 2 and "not a folder" in err


def test_info_prints_the_model_metadata(model):
    rc, out, err = run("info", "--model", model)
    assert rc == 0, err
    assert "tiny-cli" in out and "-120 .. 880 m" in out and "water (17, 141, 215)" in out
    rc, out, _ = run("info", "--model", model, "--json")
    meta = json.loads(out)
    assert meta["generator"]["stage_channels"] == list(preset("tiny").stage_channels)
    rc, out, err = run("info")  # the built-in default (or the untrained stand-in)
    assert rc == 0 and "model:" in out, err


def test_python_dash_m_runs_as_a_program(tmp_path, model, map_png):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "terrain_core", "generate", "--labels", str(map_png), "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--model", str(model), "--format", "texture,meta"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"texture.png", "meta.json"}
    proc = subprocess.run(
        [*cmd[:5], str(tmp_path / "missing.png"), "--out", str(tmp_path / "o2")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------------------------------------- issue 13 cases


def test_a_failed_rerun_keeps_every_earlier_file_byte_for_byte(tmp_path, model, map_png):
    # A re-run whose commit cannot replace one file (here a folder in the way of terrain.obj, found before
    # anything moves; rename failures in turn are in test_output_set) leaves the earlier set intact.
    out = tmp_path / "out"
    assert run("generate", "--labels", map_png, "--out", out, "--model", model, "-q")[0] == 0
    (out / "terrain.obj").unlink()
    (out / "terrain.obj").mkdir()
    before = {p.name: (p.read_bytes() if p.is_file() else None) for p in out.iterdir()}
    rc, _, err = run("generate", "--labels", map_png, "--out", out, "--model", model, "--seed", 5)
    assert rc == 2 and err.count("\n") == 1 and "in the way" in err, err
    assert {p.name: (p.read_bytes() if p.is_file() else None) for p in out.iterdir()} == before


def test_a_png_whose_data_stops_early_exits_2(tmp_path, model):
    from bad_images import short_png

    p = short_png(tmp_path / "short.png", PALETTE[4], 64, 512, rows=64)
    rc, _, err = run("generate", "--labels", p, "--out", tmp_path / "out", "--model", model)
    assert rc == 2 and "holds 64 of 512 rows" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_huge_map_exits_2_with_one_line_and_no_pillow_warning(tmp_path, model):
    from bad_images import huge_header_png

    p = huge_header_png(tmp_path / "huge.png", 20000, 20000)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "terrain_core", "generate", "--labels", str(p), "--out", str(tmp_path / "o"),
         "--model", str(model)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "too large" in proc.stderr, proc.stderr
    assert "Warning" not in proc.stderr and not (tmp_path / "o").exists()


def test_a_model_with_nan_weights_is_a_bad_model_not_an_internal_error(tmp_path, map_png):
    net = InferenceNet(preset("tiny"), ShadowConfig())
    with torch.no_grad():
        for prm in net.parameters():
            prm.fill_(float("nan"))
    st, _ = export_model(net, tmp_path / "nan", onnx=False)
    rc, _, err = run("generate", "--labels", map_png, "--out", tmp_path / "out", "--model", st)
    assert rc == 2 and "NaN" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_small_tile_without_overlap_uses_a_fitting_default(tmp_path, model, map_png):
    rc, _, err = run(
        "generate", "--labels", map_png, "--out", tmp_path / "o", "--model", model, "--tile", "64"
    )
    assert rc == 0, err
    rc, _, err = run("generate", "--labels", map_png, "--out", tmp_path / "o", "--model", model,
                     "--size", "16384", "--tile", "512", "--max-memory", "2")  # fmt: skip
    assert rc == 2 and "--tile" not in err.split("tiles,")[-1], err  # a smaller tile would not help


def test_a_folder_in_use_by_another_run_exits_2_before_any_work(tmp_path, model, map_png):
    from terrain_core.output_set import OutputLock

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    try:
        (out / ".terrain-output.lock").write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename, "time": 1e12, "id": "x"})
        )
        rc, _, err = run("generate", "--labels", map_png, "--out", out, "--model", model)
        assert rc == 2 and f"in use by another run (process {holder.pid}" in err and err.count("\n") == 1
        assert sorted(p.name for p in out.iterdir()) == [".terrain-output.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert OutputLock(out).acquire() is not None  # the holder is gone: its lock is stale and taken over


def test_a_closed_stdout_ends_quietly_like_a_unix_tool(model):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for extra in ([], ["--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "terrain_core", "info", "--model", str(model), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        proc.stdout.close()  # `... | true`: the reader is gone before the first line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141 and err == "", err


def test_sigterm_during_a_run_leaves_nothing_behind(tmp_path, model, map_png):
    import signal
    import time

    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "terrain_core", "generate", "--labels", str(map_png), "--out", str(out),
         "--model", str(model), "--size", "2048", "--tile", "256"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().startswith("map:")  # the lock is held and the work has begun
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err, err
    assert not out.exists()  # the folder it made, its lock and staging folder are gone
