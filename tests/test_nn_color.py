"""sRGB <-> normalised Lab: known colours, round trip, finite gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from terrain_core.nn.color import lab_to_rgb, rgb_to_lab  # noqa: E402


def _px(rgb):
    return torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1)


@pytest.mark.parametrize(
    "rgb,lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),  # D65 white
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),  # sRGB red, published CIE Lab (D65)
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
        ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
    ],
)
def test_known_colours(rgb, lab):
    got = rgb_to_lab(_px(rgb)).flatten().numpy()
    want = np.array([lab[0] / 50 - 1, lab[1] / 110, lab[2] / 110])  # the normalised scale
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_round_trip_rgb_lab_rgb():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 3, 17, 9, generator=g, dtype=torch.float64)
    rgb[0, :, 0, 0] = 0.0  # include the exact corners of the gamut
    rgb[0, :, 0, 1] = 1.0
    back = lab_to_rgb(rgb_to_lab(rgb))
    torch.testing.assert_close(back, rgb, atol=1e-9, rtol=0)
    rgb32 = rgb.float()
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb32)), rgb32, atol=2e-5, rtol=0)


def test_lab_to_rgb_clamps_out_of_gamut():
    lab = torch.tensor([[1.0, 1.0, -1.0], [-1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 2).contiguous()
    rgb = lab_to_rgb(lab)
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0


def test_gradients_finite_everywhere():
    # the worst places: exact black/white (power laws at 0), the tanh range edges, random values
    lab = torch.cat(
        [
            torch.tensor([-1.0, 0.0, 0.0]).view(1, 3, 1, 1),
            torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1),
            torch.tensor([-1.0, 1.0, -1.0]).view(1, 3, 1, 1),
            torch.rand(1, 3, 1, 1) * 2 - 1,
        ]
    ).requires_grad_(True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()
    rgb = (
        torch.tensor([0.0, 1.0, 0.04045, 0.5])
        .view(4, 1, 1, 1)
        .expand(4, 3, 1, 1)
        .clone()
        .requires_grad_(True)
    )
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    # a gradient flows at mid-grey (not silently zeroed by the clamps)
    assert float(rgb.grad[3].abs().sum()) > 0


def test_gradcheck_interior():
    lab = (torch.rand(1, 3, 2, 2, dtype=torch.float64) * 0.6 - 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lab_to_rgb, (lab,))
    rgb = (torch.rand(1, 3, 2, 2, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))


def test_shape_error():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        lab_to_rgb(torch.zeros(1, 4, 2, 2))
