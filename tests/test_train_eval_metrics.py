"""The evaluation's building blocks on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import lightness, pearson, seg_scores, spectral_slope
from training.samples import auto_hillshade


def _power_law_surface(n: int, beta: float, seed: int = 0) -> np.ndarray:
    """A random surface whose power spectrum falls as k**beta."""
    rng = np.random.default_rng(seed)
    ky, kx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * k ** (beta / 2)
    return np.real(np.fft.ifft2(spec))


@pytest.mark.parametrize("beta", [0.0, -2.0, -4.0])
def test_spectral_slope_recovers_a_power_law(beta):
    assert spectral_slope(_power_law_surface(128, beta)) == pytest.approx(beta, abs=0.35)


def test_hillshade_is_lit_from_the_named_side():
    y, x = np.mgrid[0:64, 0:64].astype(float)
    rises_to_south_east = (x + y) / 64.0  # its slopes face north-west
    nw, se = auto_hillshade(rises_to_south_east, 315.0), auto_hillshade(rises_to_south_east, 135.0)
    assert nw.mean() > 0.9 and se.mean() < 0.5
    ne, sw = auto_hillshade(x / 64.0, 45.0), auto_hillshade(x / 64.0, 225.0)  # rises to the east: faces west
    assert sw.mean() > ne.mean()


def test_segmentation_scores_and_correlation():
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    s = seg_scores(truth.astype(np.uint8), truth)
    assert (
        s["miou"] == 1.0
        and s["pixel_accuracy"] == 1.0
        and set(s["per_class_iou"]) == {"water", "plains", "forest"}
    )
    wrong = seg_scores(np.full_like(truth, 5, dtype=np.uint8), truth)
    assert wrong["miou"] == 0.0 and wrong["pixel_accuracy"] == 0.0
    a = np.random.default_rng(0).random(100)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0) and pearson(a, -a) == pytest.approx(-1.0)
    assert lightness(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])) == pytest.approx([100.0, 0.0], abs=1e-3)


def test_eval_options_refuse_sizes_the_generator_cannot_take():
    from training.evaluate import EvalError, EvalOptions

    assert EvalOptions(size=64, seeds=1).size == 64
    with pytest.raises(EvalError, match="multiple of 32"):
        EvalOptions(size=48)
    with pytest.raises(EvalError, match="--seeds"):
        EvalOptions(seeds=0)
