"""Differentiable sRGB (D65) <-> CIE Lab on [N, 3, H, W] tensors.

The generator works in a *normalised* Lab, the original's scaling, so that every channel sits in about
[-1, 1] and a tanh can produce it:

    L_norm = L / 50 - 1      (L in 0..100   -> -1..1)
    a_norm = a / 110         (a in about +-110 for sRGB colours -> about -1..1)
    b_norm = b / 110

Both directions are safe to differentiate everywhere: the power laws are evaluated on inputs clamped to
the branch in which they are used, so no 0 ** (1/2.4) (infinite slope) ever reaches autograd, and
``torch.where`` never multiplies a zero gradient by an infinite one (which would give NaN).
"""

from __future__ import annotations

import numpy as np
import torch

# sRGB primaries with the D65 white (IEC 61966-2-1): linear RGB -> XYZ.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)
# The exact inverse (not a rounded published one), so that the round trip closes to float precision.
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)  # Xn, Yn, Zn

_DELTA = 6.0 / 29.0  # CIE Lab: the cube-root law joins the linear segment at t = delta**3
L_SCALE, AB_SCALE = 50.0, 110.0  # normalised Lab = (L / 50 - 1, a / 110, b / 110)


def _mix(matrix: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel 3x3 colour matrix: [3, 3] @ [N, 3, H, W] -> [N, 3, H, W].

    The entries enter as Python numbers, not as a tensor: a constant tensor would be copied from the host
    to the GPU at every call, and each such copy waits for the device.
    """
    c = [x[:, j : j + 1] for j in range(3)]  # [N, 1, H, W] each
    rows = [c[0] * float(m[0]) + c[1] * float(m[1]) + c[2] * float(m[2]) for m in matrix]
    return torch.cat(rows, dim=1)


def _scale_channels(x: torch.Tensor, scale: np.ndarray) -> torch.Tensor:
    """[N, 3, H, W] times a per-channel constant (Python numbers, as in :func:`_mix`)."""
    return torch.cat([x[:, i : i + 1] * float(s) for i, s in enumerate(scale)], dim=1)


def _check(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be [N, 3, H, W], got shape {tuple(x.shape)}")


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """sRGB 0..1 -> linear light 0..1 (values are clamped to 0..1 first)."""
    c = c.clamp(0.0, 1.0)
    hi = ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= 0.04045, c / 12.92, hi)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """Linear light -> sRGB 0..1; out-of-gamut values are clamped to 0..1 (zero gradient there)."""
    c = c.clamp(0.0, 1.0)
    hi = 1.055 * c.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055
    return torch.where(c <= 0.0031308, 12.92 * c, hi)


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """sRGB in 0..1 [N, 3, H, W] -> normalised Lab [N, 3, H, W] (see the module docstring)."""
    _check(rgb01, "rgb01")
    xyz = _mix(_RGB_TO_XYZ, srgb_to_linear(rgb01))  # [N, 3, H, W]
    t = _scale_channels(xyz, 1.0 / _WHITE_D65)
    f = torch.where(
        t > _DELTA**3,
        t.clamp(min=_DELTA**3) ** (1.0 / 3.0),  # clamped: no infinite slope of the cube root at 0
        t / (3 * _DELTA**2) + 4.0 / 29.0,
    )
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.cat([L / L_SCALE - 1.0, a / AB_SCALE, b / AB_SCALE], dim=1)


def lab_to_rgb(lab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised Lab [N, 3, H, W] -> sRGB in 0..1 [N, 3, H, W] (out-of-gamut colours clamped)."""
    _check(lab_norm, "lab_norm")
    L = (lab_norm[:, 0:1] + 1.0) * L_SCALE
    a = lab_norm[:, 1:2] * AB_SCALE
    b = lab_norm[:, 2:3] * AB_SCALE
    fy = (L + 16.0) / 116.0
    f = torch.cat([fy + a / 500.0, fy, fy - b / 200.0], dim=1)  # [N, 3, H, W]: fx, fy, fz
    t = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    xyz = _scale_channels(t, _WHITE_D65)
    return linear_to_srgb(_mix(_XYZ_TO_RGB, xyz))
