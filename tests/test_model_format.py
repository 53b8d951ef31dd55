"""Which model file is loaded: the one choice the CLI, the runtime and the add-on share
(``model_format.choose_model_path``). Plain files in tmp_path stand in for the shipped models."""

from __future__ import annotations

from pathlib import Path

import pytest

import terrain_core.model_format as mf
from terrain_core.model_format import ModelFileError, choose_model_path, default_model_path


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models folder; ``ship(name)`` puts a (non-empty) file there."""
    monkeypatch.setattr(mf, "MODELS_DIR", tmp_path)

    def ship(name: str, data: bytes = b"x") -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    return ship


def test_nothing_shipped_means_the_untrained_stand_in(models):
    assert default_model_path() is None
    for runtime in (None, "auto", "onnx", "torch", "TORCH"):
        assert choose_model_path(None, runtime) is None
    assert choose_model_path(None, "torch", strict=True) is None  # the stand-in runs on torch
    with pytest.raises(ModelFileError, match=r"no built-in \.onnx model"):
        choose_model_path(None, "onnx", strict=True)


def test_the_runtime_picks_the_default_of_its_type_else_any(models):
    ox, st = models("default.onnx"), models("default.safetensors")
    assert choose_model_path() == ox == default_model_path()
    assert choose_model_path(None, "AUTO") == ox and choose_model_path(None, "ONNX") == ox
    assert choose_model_path(None, "torch") == st == choose_model_path(None, "TORCH", strict=True)
    st.unlink()
    assert choose_model_path(None, "torch") == ox  # a preference, not a demand: the .onnx runs
    ox.write_bytes(b"")  # an empty file is not a shipped model
    models("default.safetensors")
    assert choose_model_path() == choose_model_path(None, "onnx") == st
    with pytest.raises(ModelFileError, match="no built-in"):
        choose_model_path(None, "onnx", strict=True)


def test_a_given_model_wins_and_strict_checks_its_type(models):
    models("default.onnx")
    assert choose_model_path("mine.safetensors", "onnx") == Path("mine.safetensors")
    assert choose_model_path("mine.onnx", "onnx", strict=True) == Path("mine.onnx")
    with pytest.raises(ModelFileError, match=r"needs a \.onnx model file, got mine\.safetensors"):
        choose_model_path("mine.safetensors", "onnx", strict=True)
    with pytest.raises(ModelFileError, match=r"needs a \.safetensors model file"):
        choose_model_path("mine.onnx", "torch", strict=True)
    with pytest.raises(ValueError, match="runtime must be one of"):
        choose_model_path(None, "tensorflow")
