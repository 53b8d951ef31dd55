"""training.ship: evaluation figures written into both model files' provenance without re-export."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from terrain_core.config import ShadowConfig, preset  # noqa: E402
from terrain_core.model_export import export_model  # noqa: E402
from terrain_core.nn.inference import InferenceNet  # noqa: E402
from terrain_core.runtime import TerrainGenerator, read_model_metadata  # noqa: E402
from training.sanity import semantic_checks  # noqa: E402
from training.ship import headline, update_provenance  # noqa: E402


@pytest.mark.slow
def test_update_provenance_rewrites_both_files_and_they_still_load(tmp_path):
    torch.manual_seed(0)
    net = InferenceNet(preset("tiny"), ShadowConfig()).eval()
    stem = tmp_path / "model"
    export_model(net, stem, metadata={"provenance": {"preset": "tiny", "steps": 3}})
    before = TerrainGenerator.load(stem.with_suffix(".onnx"))
    sanity = semantic_checks(before, size=128, seeds=(0, 1))
    ev = {
        "split": "val",
        "maps": 2,
        "segmentation": {"miou": 0.5, "per_class": [0.1], "generated": {"miou": 0.4, "per_class_iou": {}}},
        "height": {"per_class": {"water": {"pixels": 3}}, "spectral_slope": {"real_mean": -4.0}},
    }
    extra = {"evaluation": headline(ev, sanity)}
    update_provenance(stem, extra)
    for suffix in (".safetensors", ".onnx"):
        meta = read_model_metadata(stem.with_suffix(suffix))
        prov = meta["provenance"]
        assert prov["preset"] == "tiny" and prov["steps"] == 3  # kept
        # lists and per-class tables are left in the full report; one level of sub-tables is kept
        assert prov["evaluation"]["segmentation"] == {"miou": 0.5, "generated": {"miou": 0.4}}
        assert prov["evaluation"]["height"] == {"spectral_slope": {"real_mean": -4.0}}
        assert set(prov["evaluation"]["sanity"]) == set(sanity["checks"])
        after = TerrainGenerator.load(stem.with_suffix(suffix))
        lab = before.generate(__import__("numpy").zeros((32, 32), "uint8"), seed=1)
        got = after.generate(lab.labels, seed=1)
        assert abs(got.height - lab.height).max() < 1e-3  # same weights
    assert not list(tmp_path.glob(".model*"))  # no temporary files left


def test_ship_of_a_bad_run_says_what_is_wrong(tmp_path, capsys):
    from training.ship import main as ship_main

    (tmp_path / "run").mkdir()
    assert ship_main(["--run", str(tmp_path / "run"), "--data", str(tmp_path), "--no-export"]) == 2
    assert "holds no maps" in capsys.readouterr().err
    assert not (tmp_path / "run" / "export").exists()
