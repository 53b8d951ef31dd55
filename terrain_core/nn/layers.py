"""Building blocks of the generator: small functions plus thin modules that hold their weights.

Everything here must also export to ONNX with dynamic batch, height and width
(``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)``). So no Python integers derived from tensor
sizes decide anything structural: feature sizes only ever flow into tensor ops (slices, aranges,
interpolation sizes), never into ``if``/``range``.

Padding is the original's "symmetric" (mirror including the edge pixel, numpy's ``symmetric``). For a
3x3 kernel that equals edge replication, which works down to 1x1 feature maps (a 32x32 input has 1x1
features in its first stage, where PyTorch's ``reflect`` would fail).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------- helpers


def glorot_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero bias (the original's default for every plain conv/dense)."""
    nn.init.xavier_uniform_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def conv2d(cin: int, cout: int, k: int, *, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    """Unpadded conv with Glorot init; pad with :func:`symmetric_pad` before it."""
    return glorot_(nn.Conv2d(cin, cout, k, stride=stride, bias=bias))


def symmetric_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Mirror-pad H and W by ``p`` including the edge pixel (TF's SYMMETRIC): [N,C,H,W] -> [N,C,H+2p,W+2p].

    Works for any feature size >= 1 and any p (the pattern repeats with period 2*size), so it holds at the
    1x1 and 4x4 feature maps of the smallest inputs.
    """
    if p == 0:
        return x
    if p == 1:
        return F.pad(x, (1, 1, 1, 1), mode="replicate")  # identical to symmetric for p = 1, and native
    return _symmetric_index(_symmetric_index(x, p, 2), p, 3)


def _symmetric_index(x: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    # positions -p .. n+p-1 mirrored into 0..n-1 (edge pixel repeated). Each pass mirrors once at each
    # edge and moves an index at least one pixel closer, so p passes reach every size >= 1. (Written with
    # where rather than a modulo: ONNX export has no remainder by a symbolic size.)
    j = torch.arange(-p, n + p, device=x.device)
    for _ in range(p):
        j = torch.where(j < 0, -1 - j, j)
        j = torch.where(j >= n, 2 * n - 1 - j, j)
    return torch.index_select(x, dim, j)


def finite_differences(h: torch.Tensor) -> torch.Tensor:
    """Height gradients along rows and columns: [N, 1, H, W] -> [N, 2, H, W] (d/dy, d/dx).

    The first row (column) has no upper (left) neighbour; it repeats the next difference, as the
    original's symmetric padding of the difference image does.
    """
    dy = h[:, :, 1:, :] - h[:, :, :-1, :]  # [N, 1, H-1, W]
    dx = h[:, :, :, 1:] - h[:, :, :, :-1]  # [N, 1, H, W-1]
    dy = torch.cat([dy[:, :, :1], dy], dim=2)
    dx = torch.cat([dx[:, :, :, :1], dx], dim=3)
    return torch.cat([dy, dx], dim=1)


def in_float32(fn, *xs: torch.Tensor):
    """``fn(*xs)`` in float32 with autocast off when autocast is on; plain ``fn(*xs)`` otherwise.

    For the layers that make heights and everything computed from them (the generator's output heads, the
    shadow generator): in bf16 (8-bit mantissa) a smooth surface falls on a lattice of a few hundred levels,
    and its finite differences on far fewer, a pattern the discriminator can learn and G cannot remove.
    """
    device = xs[0].device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return fn(*xs)
    with torch.autocast(device, enabled=False):
        return fn(*(x.float() for x in xs))


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize (half-pixel centres, no antialias, as TF2's resize) of x to like's H, W."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2: [N, C, H, W] -> [N, C, 2H, 2W]."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------ noise injection


class NoiseInjection(nn.Module):
    """x + b * noise, b a learned per-channel scale initialised to 0 (StyleGAN).

    The noise is an explicit input (drawn from the seed outside the network), not drawn here.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))  # b: [1, C, 1, 1]

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # x [N, C, H, W], noise [N, 1, H, W] -> [N, C, H, W]
        return x + self.weight * noise


# ---------------------------------------------------------------------------------------------- SPADE


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Parameter-free instance norm over H, W (biased variance): [N, C, H, W] -> same."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


class SPADENorm(nn.Module):
    """SPADE (Park et al. 2019): instance norm, then x * (1 + gamma) + beta with gamma, beta from the segmap.

    ``seg`` must already be resized to x's size (the generator resizes once per stage).
    """

    def __init__(self, channels: int, seg_channels: int, hidden: int = 128, kernel: int = 5):
        super().__init__()
        self.pad = kernel // 2
        self.shared = conv2d(seg_channels, hidden, kernel)
        self.gamma = conv2d(hidden, channels, kernel)
        self.beta = conv2d(hidden, channels, kernel)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        # x [N, C, H, W], seg [N, S, H, W] -> [N, C, H, W]
        h = F.relu(self.shared(symmetric_pad(seg, self.pad)))  # [N, hidden, H, W]
        h = symmetric_pad(h, self.pad)
        return instance_norm(x) * (1.0 + self.gamma(h)) + self.beta(h)


class SPADEConv(nn.Module):
    """v1.0's "SPADE, leaky ReLU, conv" unit (the activation sits between norm and conv as in the block)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        seg_channels: int,
        hidden: int,
        spade_kernel: int,
        slope: float,
        bias: bool = True,
    ):
        super().__init__()
        self.norm = SPADENorm(cin, seg_channels, hidden, spade_kernel)
        self.conv = conv2d(cin, cout, kernel, bias=bias)
        self.pad = kernel // 2
        self.slope = slope

    def forward(self, x: torch.Tensor, seg: torch.Tensor, act: bool = True) -> torch.Tensor:
        x = self.norm(x, seg)
        if act:
            x = F.leaky_relu(x, self.slope)
        return self.conv(symmetric_pad(x, self.pad))


# ----------------------------------------------------------------------------------------- Scaled Sum


def block_average(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Average x over a grid x grid partition of the image and repeat it back: [N,C,H,W] -> [N,C,H,W].

    Block boundaries are fractions of the current size (row y belongs to block floor(y * grid / H)), so
    any H, W >= grid works; for H divisible by grid the blocks are exact. Written with one-hot membership
    matrices built by arange over the symbolic size, which keeps dynamic-shape ONNX export possible.
    """
    if grid == 1:
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    mh = _membership(x.shape[2], grid, x)  # [H, g]
    mw = _membership(x.shape[3], grid, x)  # [W, g]
    # block sums [N, C, g, g], divided by block areas (rows per block x columns per block)
    sums = torch.einsum("nchw,hi,wj->ncij", x, mh, mw)
    area = mh.sum(0)[:, None] * mw.sum(0)[None, :]  # [g, g]
    means = sums / area.clamp(min=1.0)
    return torch.einsum("ncij,hi,wj->nchw", means, mh, mw)


def _membership(n, grid: int, like: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(n, device=like.device)
    block = torch.div(rows * grid, n, rounding_mode="floor")  # [n]
    return (block[:, None] == torch.arange(grid, device=like.device)[None, :]).to(like.dtype)  # [n, g]


class ScaledSum(nn.Module):
    """v1.2's Scaled Sum, resolution-agnostic: mix the features with their averages over a binary
    partition tree of the image (1x1, 2x2, 4x4, ... blocks), by softmax-normalised learned weights.

    ``grids`` are the blocks per side of each pooled level. The original pooled 1 .. size/8 blocks per
    side for nominal sizes 8..64 and therefore only ran at 256x256 inputs; here the levels are fixed at
    construction and block boundaries follow the actual size, so the same weights run at any size. The
    mixture is a convex combination (the original additionally divided it by the number of levels, a
    constant the following 1x1 conv absorbs).
    """

    def __init__(self, grids: tuple[int, ...]):
        super().__init__()
        self.grids = tuple(int(g) for g in grids)
        self.logits = nn.Parameter(torch.ones(len(self.grids) + 1))  # [levels + 1]; equal weights at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [N, C, H, W] -> [N, C, H, W]
        w = torch.softmax(self.logits, dim=0)
        out = x * w[0]
        for i, g in enumerate(self.grids):
            out = out + block_average(x, g) * w[i + 1]
        return out


def scaled_sum_grids(levels: int, min_size: int) -> tuple[int, ...]:
    """Grids 1, 2, 4, ... 2**(levels-1), keeping only those no finer than ``min_size`` (the smallest
    feature size the stage can see), so that every block holds at least one pixel at every valid input."""
    return tuple(2**j for j in range(levels) if 2**j <= min_size)


# ------------------------------------------------------------------------------- modulated convolution


def segmap_style(seg_feat: torch.Tensor, feat_mod: torch.Tensor) -> torch.Tensor:
    """The v1.1 style s: softmax over channels of relu(seg branch) * (feature branch + 1).

    seg_feat [N, C, H, W] (3x3 conv of the resized segmap, pre-ReLU), feat_mod [N, C, H, W] (1x1 conv of
    the features) -> s [N, C, H, W], every pixel's s summing to 1 over channels.
    """
    logits = F.relu(seg_feat) * (feat_mod + 1.0)
    # softmax over channels written out: ONNX Runtime's Softmax over a non-last axis transposes and took
    # ~half of the generator's time; this form is the same maths and ~1.7x faster end to end there.
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


def modulated_conv2d(
    x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, area: torch.Tensor | float | None = None
) -> torch.Tensor:
    """The original's modulated convolution with its demodulation, exactly as SPEC.md states it.

    x [N, Cin, H, W], s [N, Cin, H, W] (per-pixel style), weight [Cout, Cin, k, k] -> [N, Cout, H, W].

        y[n, o] = conv(x * (1 + s), w)[n, o] / d[n, o]
        d[n, o] = sqrt( sum_{i,ky,kx} w[o,i,ky,kx]^2 * H * W  +  sum_{c,h,w} s[n,c,h,w]^2  +  1e-8 )

    (the second sum runs over the *style*, not over the modulated weights: the original's formula, which
    is not StyleGAN2's). Because d is constant over space for each (sample, output channel), dividing the
    output equals convolving with per-sample demodulated kernels, and needs no grouped conv.
    ``area`` given (a fixed reference area; see the generator): both H * W and the style sum over H, W are
    replaced by ``area`` times per-pixel means, because with the actual size the output scales as
    1 / sqrt(H * W) and so depends on the input size (and tiles would not match the whole map). At
    H * W == area the two formulas are identical.
    """
    k = weight.shape[-1]
    w_sq = weight.pow(2).sum(dim=(1, 2, 3))  # [Cout]
    if area is None:
        area = x.shape[2] * x.shape[3]
        s_sq = s.pow(2).sum(dim=(1, 2, 3))  # [N]
    else:
        s_sq = s.pow(2).sum(dim=1).mean(dim=(1, 2)) * area  # [N]
    d = torch.sqrt(w_sq[None, :] * area + s_sq[:, None] + 1e-8)  # [N, Cout]
    y = F.conv2d(symmetric_pad(x * (1.0 + s), k // 2), weight)  # [N, Cout, H, W]
    return y / d[:, :, None, None]


class ModulatedConv(nn.Module):
    """Segmentation-modulated conv (v1.1): style from the resized segmap and the features, then
    :func:`modulated_conv2d`. No bias (as the original). Optionally Scaled Sum (v1.2) before the
    features' 1x1 conv."""

    def __init__(
        self,
        cin: int,  # input feature channels
        cout: int,  # output channels
        kernel: int,  # kernel side, odd (symmetric padding keeps H, W)
        seg_channels: int,  # channels of the one-hot class map, the source of the style
        scaled_sum_grids: tuple[int, ...] | None = None,  # Scaled Sum's block grids; None = off
        area: float | None = None,  # H * W for the demodulation (fixed: tiles match the map); None = actual
    ):
        super().__init__()
        self.seg_conv = conv2d(seg_channels, cin, 3)  # segmap -> per-channel style logits
        self.feat_conv = conv2d(cin, cin, 1)
        self.scaled_sum = ScaledSum(scaled_sum_grids) if scaled_sum_grids else None
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")  # He uniform: U(+-sqrt(6 / fan_in))
        self.area = area

    def style(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        # x [N, Cin, H, W], seg [N, S, H, W] -> s [N, Cin, H, W]
        f = self.scaled_sum(x) if self.scaled_sum is not None else x
        return segmap_style(self.seg_conv(symmetric_pad(seg, 1)), self.feat_conv(f))

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(x, self.style(x, seg), self.weight, self.area)


# ------------------------------------------------------------------------------ local self-attention


def _split_embedding(rel_h: torch.Tensor, rel_w: torch.Tensor, k: int) -> torch.Tensor:
    """Relative embeddings as one table [C, k*k]: the first C//2 channels vary with the row offset
    (rel_h [C1, k]), the rest with the column offset (rel_w [C2, k]). Offset o = dy * k + dx."""
    eh = rel_h[:, :, None].expand(-1, k, k)  # [C1, k(dy), k(dx)]
    ew = rel_w[:, None, :].expand(-1, k, k)  # [C2, k(dy), k(dx)]
    return torch.cat([eh, ew], dim=0).reshape(rel_h.shape[0] + rel_w.shape[0], k * k)


def local_attention(
    q: torch.Tensor, kpad: torch.Tensor, vpad: torch.Tensor, emb: torch.Tensor, k: int, heads: int
) -> torch.Tensor:
    """Local (k x k) dot-product attention without a [N, C, k*k, H, W] tensor.

    q [N, C, H, W]; kpad, vpad [N, C, H+k-1, W+k-1] (keys and values, padded); emb [C, k*k] the relative
    embedding added to the values -> [N, C, H, W].

        a[n,h,o,y,x] = softmax_o( sum_{c in head h} q[n,c,y,x] * key[n,c,y+dy,x+dx] )
        out[n,c,y,x] = sum_o a[n,h(c),o,y,x] * (val[n,c,y+dy,x+dx] + emb[c,o])
                     = sum_o a * val_shifted  +  einsum(a, emb)

    The largest temporary is the logits [N, heads, k*k, H, W]; keys and values are read per offset from
    shifted slices of the padded tensors.
    """
    n, c = q.shape[0], q.shape[1]
    hh, ww = q.shape[2], q.shape[3]
    ch = c // heads
    qh = q.reshape(n, heads, ch, hh, ww)
    logits = []
    for dy in range(k):
        for dx in range(k):
            ks = kpad[:, :, dy : dy + hh, dx : dx + ww].reshape(n, heads, ch, hh, ww)
            logits.append((qh * ks).sum(dim=2))  # [N, heads, H, W]
    attn = torch.softmax(torch.stack(logits, dim=2), dim=2)  # [N, heads, k*k, H, W]
    # embedding term: [N, heads, k*k, H, W] x [heads, ch, k*k] -> [N, heads, ch, H, W]
    out = torch.einsum("nhoyx,hco->nhcyx", attn, emb.reshape(heads, ch, k * k))
    for dy in range(k):
        for dx in range(k):
            vs = vpad[:, :, dy : dy + hh, dx : dx + ww].reshape(n, heads, ch, hh, ww)
            out = out + attn[:, :, dy * k + dx, None] * vs
    return out.reshape(n, c, hh, ww)


def local_attention_naive(
    q: torch.Tensor, kpad: torch.Tensor, vpad: torch.Tensor, emb: torch.Tensor, k: int, heads: int
) -> torch.Tensor:
    """Reference of :func:`local_attention` the way the original computes it: unfold keys and values into
    [N, C, k*k, H, W] tensors (memory k*k times the features). Same arguments and result."""
    n, c = q.shape[0], q.shape[1]
    hh, ww = q.shape[2], q.shape[3]
    ch = c // heads
    kun = F.unfold(kpad, k).reshape(n, heads, ch, k * k, hh, ww)  # [N, heads, ch, k*k, H, W]
    vun = F.unfold(vpad, k).reshape(n, heads, ch, k * k, hh, ww)
    vun = vun + emb.reshape(1, heads, ch, k * k, 1, 1)
    logits = (q.reshape(n, heads, ch, 1, hh, ww) * kun).sum(dim=2)  # [N, heads, k*k, H, W]
    attn = torch.softmax(logits, dim=2)
    return (attn[:, :, None] * vun).sum(dim=3).reshape(n, c, hh, ww)


class LocalSelfAttention(nn.Module):
    """Stand-Alone Self-Attention (Ramachandran et al. 2019) as v1.2 uses it in place of a 3x3 conv.

    1x1 q/k/v convs (with bias, Glorot), a k x k neighbourhood, learned relative row / column embeddings
    for half the channels each, added to the values (the original's choice; the paper adds them to the
    keys). Logits are q.k summed over the channels of each head (``heads = cout`` gives the original's
    per-channel softmax). Keys and values are padded symmetrically, so border pixels attend to mirrored
    neighbours as in the original; any feature size >= 1 works.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 9, heads: int = 1):
        super().__init__()
        if cout % heads:
            raise ValueError(f"attention channels {cout} must be divisible by heads {heads}")
        if kernel % 2 == 0:
            raise ValueError(f"attention kernel must be odd, got {kernel}")
        self.k, self.heads = kernel, heads
        self.q = conv2d(cin, cout, 1)
        self.key = conv2d(cin, cout, 1)
        self.value = conv2d(cin, cout, 1)
        c1 = cout // 2
        self.rel_h = nn.Parameter(torch.randn(c1, kernel) * 0.05)  # Keras RandomNormal's default std
        self.rel_w = nn.Parameter(torch.randn(cout - c1, kernel) * 0.05)

    def qkv(self, x: torch.Tensor):
        """q [N, C, H, W], keys and values padded to [N, C, H+k-1, W+k-1], embedding [C, k*k]."""
        # The 1x1 convs commute with padding, so pad the (smaller or equal) projected maps.
        p = self.k // 2
        return (
            self.q(x),
            symmetric_pad(self.key(x), p),
            symmetric_pad(self.value(x), p),
            _split_embedding(self.rel_h, self.rel_w, self.k),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [N, Cin, H, W] -> [N, Cout, H, W]
        q, kp, vp, emb = self.qkv(x)
        return local_attention(q, kp, vp, emb, self.k, self.heads)


__all__ = [
    "NoiseInjection",
    "SPADENorm",
    "SPADEConv",
    "ScaledSum",
    "ModulatedConv",
    "LocalSelfAttention",
    "modulated_conv2d",
    "segmap_style",
    "local_attention",
    "local_attention_naive",
    "block_average",
    "scaled_sum_grids",
    "symmetric_pad",
    "finite_differences",
    "instance_norm",
    "resize_to",
    "upsample2",
    "conv2d",
    "glorot_",
]
