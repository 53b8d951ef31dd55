"""Layers of terrain_core.nn against slow, independent references (numpy loops, float64)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from terrain_core.nn.layers import (  # noqa: E402
    LocalSelfAttention,
    ModulatedConv,
    NoiseInjection,
    ScaledSum,
    SPADENorm,
    block_average,
    finite_differences,
    local_attention,
    local_attention_naive,
    scaled_sum_grids,
    symmetric_pad,
)


def _np(t):
    return t.detach().cpu().double().numpy()


# ------------------------------------------------------------------------------------------- padding


def _bounce(j, n):
    """Mirror an index into 0..n-1, edge pixel included, as often as needed."""
    while j < 0 or j >= n:
        j = -j - 1 if j < 0 else 2 * n - 1 - j
    return j


@pytest.mark.parametrize("p", [1, 2, 4, 5])
@pytest.mark.parametrize("size", [(1, 1), (3, 4), (4, 7)])
def test_symmetric_pad(p, size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    got = _np(symmetric_pad(x, p))
    ri = [_bounce(j, size[0]) for j in range(-p, size[0] + p)]
    ci = [_bounce(j, size[1]) for j in range(-p, size[1] + p)]
    np.testing.assert_array_equal(got, _np(x)[:, :, ri][:, :, :, ci])
    if p <= min(size):  # within one period it is numpy's (and TF's) symmetric mode
        want = np.pad(_np(x), ((0, 0), (0, 0), (p, p), (p, p)), mode="symmetric")
        np.testing.assert_array_equal(got, want)


def test_finite_differences_first_row_repeats_next():
    h = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])  # [1, 1, 2, 3]
    g = finite_differences(h)
    assert g.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(_np(g[0, 0]), [[2.0, 1.0, -1.0], [2.0, 1.0, -1.0]])
    np.testing.assert_array_equal(_np(g[0, 1]), [[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])


# ------------------------------------------------------------------------------------ noise injection


def test_noise_injection_zero_init_then_active():
    layer = NoiseInjection(5)
    x = torch.randn(2, 5, 4, 6)
    noise = torch.randn(2, 1, 4, 6)
    assert torch.equal(layer(x, noise), x)  # b = 0: the noise has no effect at init
    with torch.no_grad():
        layer.weight[0, 2] = 0.5
    y = layer(x, noise)
    assert torch.equal(y[:, [0, 1, 3, 4]], x[:, [0, 1, 3, 4]])
    torch.testing.assert_close(y[:, 2], x[:, 2] + 0.5 * noise[:, 0])


# ------------------------------------------------------------------------------------ modulated conv


def _modconv_reference(x, seg, layer: ModulatedConv):
    """Numpy, per sample and per output channel, from the parameters; SPEC.md's formula word for word."""
    x, seg = _np(x), _np(seg)
    n, cin, h, w = x.shape
    sw, sb = _np(layer.seg_conv.weight), _np(layer.seg_conv.bias)
    fw, fb = _np(layer.feat_conv.weight), _np(layer.feat_conv.bias)
    wt = _np(layer.weight)
    cout, _, k, _ = wt.shape
    out = np.zeros((n, cout, h, w))
    for b in range(n):
        segp = np.pad(seg[b], ((0, 0), (1, 1), (1, 1)), mode="symmetric")
        sfeat = np.zeros((cin, h, w))
        for ky in range(3):
            for kx in range(3):
                sfeat += np.einsum("oi,ihw->ohw", sw[:, :, ky, kx], segp[:, ky : ky + h, kx : kx + w])
        sfeat += sb[:, None, None]
        fmod = np.einsum("oi,ihw->ohw", fw[:, :, 0, 0], x[b]) + fb[:, None, None]
        logits = np.maximum(sfeat, 0) * (fmod + 1)
        s = np.exp(logits - logits.max(0, keepdims=True))
        s /= s.sum(0, keepdims=True)
        xm = x[b] * (1 + s)
        p = k // 2
        xp = np.pad(xm, ((0, 0), (p, p), (p, p)), mode="symmetric")
        for o in range(cout):
            d = np.sqrt(np.sum(wt[o] ** 2) * h * w + np.sum(s**2) + 1e-8)
            kern = wt[o] / d
            acc = np.zeros((h, w))
            for ky in range(k):
                for kx in range(k):
                    acc += np.einsum("i,ihw->hw", kern[:, ky, kx], xp[:, ky : ky + h, kx : kx + w])
            out[b, o] = acc
    return out


@pytest.mark.parametrize("cin,cout,k,size", [(4, 6, 3, (5, 7)), (6, 3, 1, (4, 4)), (3, 3, 3, (1, 2))])
def test_modulated_conv_matches_slow_reference(cin, cout, k, size):
    torch.manual_seed(1)
    layer = ModulatedConv(cin, cout, k, seg_channels=7).double()
    with torch.no_grad():  # non-trivial style branch (biases are zero at init)
        layer.seg_conv.bias.uniform_(-0.5, 0.5)
        layer.feat_conv.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, cin, *size, dtype=torch.float64)
    seg = torch.rand(3, 7, *size, dtype=torch.float64)
    got = _np(layer(x, seg))
    np.testing.assert_allclose(got, _modconv_reference(x, seg, layer), rtol=1e-10, atol=1e-12)


def test_modulated_conv_style_sums_to_one_and_he_init():
    layer = ModulatedConv(16, 8, 3, seg_channels=7)
    s = layer.style(torch.randn(2, 16, 6, 6), torch.rand(2, 7, 6, 6))
    torch.testing.assert_close(s.sum(1), torch.ones(2, 6, 6))
    bound = float(np.sqrt(6.0 / (16 * 9)))  # He uniform
    assert float(layer.weight.detach().abs().max()) <= bound
    assert float(layer.weight.detach().abs().max()) > 0.9 * bound


def test_modulated_conv_reference_area():
    torch.manual_seed(0)
    layer = ModulatedConv(4, 4, 3, seg_channels=7).double()
    x, seg = torch.randn(1, 4, 6, 6, dtype=torch.float64), torch.rand(1, 7, 6, 6, dtype=torch.float64)
    y_actual = layer(x, seg)
    layer.area = 36.0  # the same area as the actual one: identical output
    torch.testing.assert_close(layer(x, seg), y_actual)
    layer.area = 144.0
    assert not torch.allclose(layer(x, seg), y_actual)


# ------------------------------------------------------------------------------- local self-attention


def _attention_loop(q, kpad, vpad, emb, k, heads):
    """Per pixel, per offset, in numpy."""
    q, kpad, vpad, emb = _np(q), _np(kpad), _np(vpad), _np(emb)
    n, c, h, w = q.shape
    ch = c // heads
    out = np.zeros_like(q)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for hd in range(heads):
                    cs = slice(hd * ch, (hd + 1) * ch)
                    keys = kpad[b, cs, y : y + k, x : x + k].reshape(ch, k * k)
                    vals = vpad[b, cs, y : y + k, x : x + k].reshape(ch, k * k) + emb[cs]
                    lg = q[b, cs, y, x] @ keys
                    a = np.exp(lg - lg.max())
                    a /= a.sum()
                    out[b, cs, y, x] = vals @ a
    return out


@pytest.mark.parametrize(
    "k,heads,c,size",
    [(1, 1, 4, (3, 5)), (3, 1, 6, (5, 4)), (3, 2, 6, (7, 3)), (5, 3, 6, (1, 6)), (9, 1, 8, (4, 9))],
)
def test_local_attention_efficient_equals_naive(k, heads, c, size):
    torch.manual_seed(2)
    layer = LocalSelfAttention(5, c, kernel=k, heads=heads).double()
    with torch.no_grad():
        layer.rel_h.normal_()
        layer.rel_w.normal_()
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    q, kp, vp, emb = layer.qkv(x)
    fast = local_attention(q, kp, vp, emb, k, heads)
    naive = local_attention_naive(q, kp, vp, emb, k, heads)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer(x), fast)
    if size[0] * size[1] <= 40:
        np.testing.assert_allclose(
            _np(fast), _attention_loop(q, kp, vp, emb, k, heads), rtol=1e-9, atol=1e-11
        )


def test_local_attention_gradients_match_naive():
    torch.manual_seed(3)
    layer = LocalSelfAttention(4, 6, kernel=3, heads=2).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    grads = []
    for fn in (local_attention, local_attention_naive):
        layer.zero_grad()
        q, kp, vp, emb = layer.qkv(x)
        fn(q, kp, vp, emb, 3, 2).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_relative_embedding_split():
    layer = LocalSelfAttention(2, 5, kernel=3)
    assert layer.rel_h.shape == (2, 3) and layer.rel_w.shape == (3, 3)  # half the channels each


# ------------------------------------------------------------------------------------------ Scaled Sum


def _block_average_loop(x, g):
    x = _np(x)
    n, c, h, w = x.shape
    out = np.zeros_like(x)
    rb = (np.arange(h) * g) // h
    cb = (np.arange(w) * g) // w
    for i in range(g):
        for j in range(g):
            m = (rb[:, None] == i) & (cb[None, :] == j)
            if m.any():
                out[:, :, m] = x[:, :, m].mean(axis=2, keepdims=True)
    return out


@pytest.mark.parametrize("size", [(8, 8), (4, 12), (7, 5), (16, 24), (3, 3)])
@pytest.mark.parametrize("g", [1, 2, 4])
def test_block_average_any_size(size, g):
    if g > min(size):
        pytest.skip("levels finer than the map are never built")
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    np.testing.assert_allclose(_np(block_average(x, g)), _block_average_loop(x, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(8, 8), (16, 32), (24, 40)])
def test_scaled_sum_mixture(size):
    torch.manual_seed(4)
    layer = ScaledSum((1, 2, 4, 8)).double()
    with torch.no_grad():
        layer.logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.5, 0.0], dtype=torch.float64))
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    w = np.exp([0.3, -1.0, 2.0, 0.5, 0.0])
    w /= w.sum()
    want = w[0] * _np(x) + sum(w[i + 1] * _block_average_loop(x, g) for i, g in enumerate((1, 2, 4, 8)))
    np.testing.assert_allclose(_np(layer(x)), want, rtol=1e-12, atol=1e-12)
    # at init the weights are equal: a mean of the five maps
    fresh = ScaledSum((1, 2, 4, 8)).double()
    want0 = (_np(x) + sum(_block_average_loop(x, g) for g in (1, 2, 4, 8))) / 5
    np.testing.assert_allclose(_np(fresh(x)), want0, rtol=1e-12)


def test_scaled_sum_grids_follow_stage_minimum():
    assert scaled_sum_grids(4, 1) == (1,)
    assert scaled_sum_grids(4, 4) == (1, 2, 4)
    assert scaled_sum_grids(4, 64) == (1, 2, 4, 8)


# ------------------------------------------------------------------------------------------------ SPADE


def test_spade_norm_instance_normalises_then_modulates():
    torch.manual_seed(5)
    layer = SPADENorm(4, seg_channels=7, hidden=8, kernel=5)
    with torch.no_grad():  # gamma = beta = 0: plain instance norm
        for conv in (layer.gamma, layer.beta):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.randn(2, 4, 6, 5) * 3 + 2
    y = layer(x, torch.rand(2, 7, 6, 5))
    torch.testing.assert_close(y.mean((2, 3)), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((2, 3), unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    with torch.no_grad():
        layer.beta.bias.fill_(0.7)
        layer.gamma.bias.fill_(1.0)
    y2 = layer(x, torch.rand(2, 7, 6, 5))
    torch.testing.assert_close(y2, 2.0 * y + 0.7)
    # works on 1x1 maps (first stage of a 32x32 input) without NaN
    assert torch.isfinite(layer(torch.randn(1, 4, 1, 1), torch.rand(1, 7, 1, 1))).all()
