"""Every entry point checks its output path before any work and ends expected failures with exit 2 and
one line (terrain_core.exits); the training tools' cases from issue 13."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from terrain_core.exits import UsageError, run_entry

ROOT = Path(__file__).resolve().parents[1]


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (UsageError("bad --x"), 2, "error: bad --x"),
        (PermissionError(13, "Permission denied", "/x"), 2, "Permission denied"),
        (KeyError("a\nb"), 1, "internal error: KeyError"),
        (KeyboardInterrupt(), 130, "stopped"),
    ],
)
def test_run_entry_maps_each_ending_to_its_code_and_one_line(capsys, exc, code, text):
    def body():
        raise exc

    assert run_entry(body, interrupted="stopped") == code
    assert text in one_line(capsys.readouterr().err)


def test_run_entry_passes_expected_types_and_the_body_code(capsys):
    class Mine(Exception):
        pass

    def bad():
        raise Mine("first line\nsecond line")

    assert run_entry(bad, expected=(Mine,)) == 2
    assert one_line(capsys.readouterr().err) == "error: first line"
    assert run_entry(lambda: 3) == 3


def _main(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_train_refuses_a_file_as_out_and_a_missing_run_to_resume(tmp_path, capsys):
    pytest.importorskip("torch")
    from training.train import main

    f = tmp_path / "file"
    f.write_text("mine")
    assert main(["--config", "tiny", "--data", str(tmp_path), "--out", str(f)]) == 2
    assert "exists and is not a folder" in one_line(capsys.readouterr().err)
    assert f.read_text() == "mine"
    assert main(["--resume", "--out", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "no run folder at" in one_line(capsys.readouterr().err)  # not "--config is required"
    assert not (tmp_path / "nope").exists()


def test_evaluate_checks_out_before_evaluating(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    # The model does not even exist: --out is checked first, so its error is the one reported.
    r = _main("training.evaluate", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path),
              "--out", str(f / "x.json"))  # fmt: skip
    assert r.returncode == 2 and "is a file, not a folder" in one_line(r.stderr)


def test_ship_refuses_a_missing_run(tmp_path):
    r = _main("training.ship", "--run", str(tmp_path / "nope"), "--data", str(tmp_path))
    assert r.returncode == 2 and "no such run folder" in one_line(r.stderr)


def test_build_dataset_refuses_maps_of_different_extent_or_too_small(tmp_path, capsys):
    from training.build_dataset import main

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (400, 800, 3), np.uint8)).save(tmp_path / "t.png")
    Image.fromarray(rng.integers(0, 255, (300, 300), np.uint8)).save(tmp_path / "h.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "h1.png")
    base = [
        "--source",
        "maps",
        "--terrain",
        str(tmp_path / "t.png"),
        "--count",
        "2",
        "--size",
        "64",
        "--quiet",
    ]
    out = tmp_path / "ds"
    assert main([*base, "--height", str(tmp_path / "h.png"), "--out", str(out)]) == 2
    assert "800x400 pixels but the height map 300x300" in one_line(capsys.readouterr().err)
    assert main([*base, "--height", str(tmp_path / "h1.png"), "--out", str(out)]) == 2
    assert "too small (1x1" in one_line(capsys.readouterr().err)
    assert not out.exists()
    f = tmp_path / "file"
    f.write_text("mine")
    assert main([*base, "--height", str(tmp_path / "h.png"), "--out", str(f)]) == 2
    assert "exists and is not a folder" in one_line(capsys.readouterr().err)


def test_build_dataset_refuses_a_truncated_map(tmp_path, capsys):
    from bad_images import short_png

    from training.build_dataset import main

    short_png(tmp_path / "t.png", (10, 120, 30), 256, 128, rows=20)
    Image.fromarray(np.zeros((128, 256), np.uint8)).save(tmp_path / "h.png")
    args = ["--source", "maps", "--terrain", str(tmp_path / "t.png"), "--height", str(tmp_path / "h.png"),
            "--out", str(tmp_path / "ds"), "--count", "2", "--size", "64", "--quiet"]  # fmt: skip
    assert main(args) == 2
    assert "holds 20 of 128 rows" in one_line(capsys.readouterr().err)
