"""terrain_core.tiling: when to tile, the tile layout, blending weights and padding (pure numpy; the
model-level checks are in test_runtime_generate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from terrain_core.tiling import (
    blend_weights,
    choose_tile,
    pad_labels,
    padded_shape,
    tile_layout,
    tile_overlap,
    tile_starts,
)


def layouts(max_cells: int, aligns: list[int]):
    """Hypothesis cases of a tiling: a canvas of ``cells`` x ``align`` px, tiles of ``tile_cells`` x
    ``align`` px, any requested overlap."""
    return given(
        cells=st.integers(1, max_cells),
        tile_cells=st.integers(2, 40),
        overlap=st.integers(0, 640),
        align=st.sampled_from(aligns),
    )


@settings(max_examples=200, deadline=None)
@layouts(200, [1, 4, 32])
def test_tiles_cover_the_canvas_aligned_with_the_requested_overlap(cells, tile_cells, overlap, align):
    n, tile = cells * align, tile_cells * align
    overlap = min(overlap, tile // 2)
    starts = tile_starts(n, tile, overlap, align)
    length = min(tile, n)
    assert starts[0] == 0 and starts[-1] + length == n
    assert all(s % align == 0 for s in starts)
    assert starts == sorted(set(starts))
    for a, b in zip(starts, starts[1:], strict=False):
        # Neighbours share at least the requested overlap (up to the alignment rounding of the starts).
        assert a + length - b >= min(overlap, length) - align
        assert b > a
    weights = blend_weights(starts, tile, n)
    total = np.zeros(n)
    for s, w in zip(starts, weights, strict=True):
        assert w.shape == (length,) and w.dtype == np.float32
        assert (w > 0).all() and (w <= 1 + 1e-6).all()
        total[s : s + length] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_blend_weights_ramp_smoothly_across_the_overlap():
    # Two tiles of 512 cannot cover 1024 with an overlap: three, evenly spread.
    assert tile_starts(1024, 512, 64, 32) == [0, 256, 512]
    starts = tile_starts(960, 512, 64, 32)
    assert starts == [0, 448]
    w0, w1 = blend_weights(starts, 512, 960)
    # Full weight outside the shared band, a monotone raised-cosine hand-over inside it.
    shared = slice(448, 512)
    assert np.all(w0[:448] == 1.0) and np.all(w1[64:] == 1.0)
    band0 = w0[shared]
    assert np.all(np.diff(band0) < 0) and band0[0] > 0.99 and band0[-1] < 0.01
    np.testing.assert_allclose(band0 + w1[:64], 1.0, atol=1e-6)
    # Smooth: the largest step between neighbouring pixels is about pi / (2 * 64), not a jump.
    assert np.abs(np.diff(band0)).max() < 0.03


def test_a_canvas_no_larger_than_the_tile_is_one_tile_of_full_weight():
    assert tile_starts(256, 512, 64, 32) == [0]
    (w,) = blend_weights([0], 512, 256)
    assert w.shape == (256,) and np.all(w == 1.0)


@pytest.mark.parametrize("n,tile,overlap", [(4096, 1024, 64), (4128, 1024, 64), (1985 // 32 * 32, 1024, 64)])
def test_large_canvases_get_evenly_spread_tiles(n, tile, overlap):
    starts = tile_starts(n, tile, overlap, 32)
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 32  # no thin sliver of a last tile
    assert len(starts) == int(np.ceil((n - overlap) / (tile - overlap)))


@settings(max_examples=200, deadline=None)
@layouts(300, [1, 8, 32])
@example(cells=9, tile_cells=8, overlap=113, align=32)  # half-tile overlap rule once gave 226, not aligned
def test_tile_layout_shrinks_tiles_but_keeps_the_overlap(cells, tile_cells, overlap, align):
    n, tile = cells * align, tile_cells * align
    overlap = min(overlap, tile // 2)
    length, starts = tile_layout(n, tile, overlap, align)
    assert length % align == 0 and length <= tile and length <= n
    assert starts[0] == 0 and starts[-1] + length == n
    if n > tile:
        # No more tiles than tiles of the full size would need.
        assert len(starts) <= int(np.ceil((n - overlap) / (tile - overlap)))
        for a, b in zip(starts, starts[1:], strict=False):
            assert a + length - b >= min(overlap, length) - align


def test_tile_layout_of_a_4096_canvas_computes_less_twice():
    length, starts = tile_layout(4096, 1024, 64, 32)
    assert len(starts) == 5 and length == 896
    computed = (len(starts) * length) ** 2 / 4096**2
    assert computed < 1.25  # tiles of 1024 would compute 1.56x the map


def test_padding_rounds_up_to_the_downsampling_and_reflects():
    assert padded_shape(40, 56, 32) == (64, 64) and padded_shape(64, 1, 32) == (64, 32)
    lab = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(pad_labels(lab, 4, 5)[:, 3:], [[1, 0], [4, 3], [1, 0], [4, 3]])
    assert pad_labels(lab, 2, 3) is lab  # nothing to pad: the map itself
    np.testing.assert_array_equal(pad_labels(lab[:1], 3, 3), [[0, 1, 2]] * 3)  # one row: repeated


@pytest.mark.parametrize(
    "tile,hp,wp,expected",
    [
        (None, 1024, 512, None),  # automatic: not above the tile size
        (None, 1056, 512, 1024),  # automatic: above it
        (0, 4096, 4096, None),  # never
        (100, 512, 512, 96),  # rounded down to the downsampling
        (1, 512, 512, 64),  # at least two steps of it
        (512, 512, 256, None),  # a tile covering the canvas is no tiling
    ],
)
def test_tile_side_decides_when_and_how_large(tile, hp, wp, expected):
    assert choose_tile(tile, hp, wp, 32, auto_above=1024) == expected


def test_tile_side_and_overlap_refuse_bad_values():
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="tile must be"):
            choose_tile(bad, 512, 512, 32)
    assert tile_overlap(None, None) == 0 and tile_overlap(None, 512) == 64 and tile_overlap(None, 64) == 32
    assert tile_overlap(32, 64) == 32
    with pytest.raises(ValueError, match="at most half the tile"):
        tile_overlap(33, 64)
    with pytest.raises(ValueError, match=">= 0"):
        tile_overlap(-1, 64)
    with pytest.raises(ValueError, match="pixel count"):
        tile_overlap(1.5, 64)
