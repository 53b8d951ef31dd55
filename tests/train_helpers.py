"""Shared by the training tests: tiny data sets made by the real builder (``training.build_dataset``'s CLI),
and the comparison of two runs' checkpoints."""

from __future__ import annotations

from pathlib import Path


def build_procedural(out: Path, count: int, seed: int = 0, size: int = 64) -> Path:
    """``count`` crops of ``size`` pixels from the procedural world of ``seed``, written to ``out``."""
    from training.build_dataset import main as build

    args = ["--source", "procedural", "--out", str(out), "--count", str(count), "--size", str(size)]
    assert build([*args, "--seed", str(seed)]) == 0
    return out


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two checkpoints (``Trainer.state_dict``) hold bit-identical G, D and EMA weights and optimiser
    states."""
    import torch

    for key in ("g", "d", "ema"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs"
    for opt in ("g_opt", "d_opt"):
        for pid, st in a[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[opt]["state"][pid][k]), f"{opt} {pid}.{k} differs"
