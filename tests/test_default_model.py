"""The shipped default model: loads on both runtimes with its provenance, and passes the semantic checks
any user would make (training/sanity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from terrain_core.runtime import MODELS_DIR, TerrainGenerator
from training.sanity import lake_forest_mountains, semantic_checks

ONNX = MODELS_DIR / "default.onnx"
ST = MODELS_DIR / "default.safetensors"
shipped = pytest.mark.skipif(not ONNX.is_file(), reason="no trained default model in terrain_core/models yet")


def test_sanity_map_has_lake_forest_and_mountains_in_rings():
    m = lake_forest_mountains(64)
    assert m[32, 32] == 0 and m[32, 12] == 2 and m[0, 0] == 5
    assert set(np.unique(m)) == {0, 2, 5}


@shipped
def test_default_is_trained_with_provenance_and_both_files_agree():
    onnx = TerrainGenerator.load(None)
    assert onnx.runtime == "onnxruntime" and not onnx.untrained
    prov = onnx.info["provenance"]
    assert prov.get("data") and prov.get("steps", 0) > 0 and prov.get("preset")
    torch_gen = TerrainGenerator.load(ST)
    labels = lake_forest_mountains(96)
    a, b = onnx.generate(labels, seed=4), torch_gen.generate(labels, seed=4)
    assert np.abs(a.height - b.height).max() < 1e-3
    assert np.abs(a.texture - b.texture).max() < 2e-3


SEED_DETAIL = "seed changes the detail (detail correlation < 0.8)"


@pytest.fixture(scope="module")
def sanity_report():
    return semantic_checks(TerrainGenerator.load(None), size=192)


@shipped
@pytest.mark.slow
def test_default_passes_the_semantic_checks(sanity_report):
    failed = [k for k, ok in sanity_report["checks"].items() if not ok and k != SEED_DETAIL]
    assert not failed, (failed, sanity_report)
    h = sanity_report["mean_height_m"]
    assert h["water"] < h["forest"] < h["mountains"]


@shipped
@pytest.mark.slow
def test_default_seed_changes_detail(sanity_report):
    assert sanity_report["checks"][SEED_DETAIL], sanity_report["detail_correlation"]


def test_sanity_cli_refuses_bad_input_with_a_message(tmp_path, capsys):
    from training.sanity import main as sanity_main

    assert sanity_main(["--model", str(tmp_path / "none.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
    assert sanity_main(["--size", "64"]) == 2
    assert "at least 128" in capsys.readouterr().err
