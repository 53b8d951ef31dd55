"""scripts/train_gpu.sh, the one-shot GPU run, dry-run on the CPU with tiny settings: it must build the
data, train for its wall-clock budget, export, evaluate and leave every promised file in $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_gpu_script_dry_run_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "TINY": "1",
        "PYTHON": sys.executable,
        "MINUTES": "0.05",  # 3 s of training: the wall-clock stop, not a step count, ends the run
        "SET": "max_steps=400",  # a safety net only
        "EVAL_MAPS": "4",
        "WORK": str(tmp_path / "work"),
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_gpu.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    want = {
        "model.safetensors",
        "model.onnx",
        "resume_state.safetensors",
        "evaluation.json",
        "summary.json",
        "stats.jsonl",
        "samples.png",
        "log.txt",
    }
    assert want <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["steps"] < 400  # stopped by the clock
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["maps"] == 4 and "border_step_index" in ev["relief"]
    log = (out / "log.txt").read_text()
    for stage in ("building the data set", "training tiny", "exporting", "evaluating", "done:"):
        assert stage in log
    # the results load in the product's runtime
    from terrain_core.runtime import TerrainGenerator

    gen = TerrainGenerator.load(out / "model.onnx")
    assert gen.generate(__import__("numpy").zeros((64, 64), "uint8"), seed=0).height.shape == (64, 64)


def test_train_gpu_script_needs_out(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_gpu.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "set OUT" in proc.stderr
