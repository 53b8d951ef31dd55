"""Class table, palette conversion, generator config and seeded inputs (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from terrain_core import config as cfgmod
from terrain_core.labels import (
    CLASSES,
    NUM_CLASSES,
    PALETTE,
    LabelMapError,
    check_labels,
    class_shares,
    labels_from_rgb,
    one_hot,
    rgb_from_labels,
)
from terrain_core.noise import draw_inputs

ORIGINAL_PALETTE = [
    (17, 141, 215),
    (225, 227, 155),
    (127, 173, 123),
    (185, 122, 87),
    (230, 200, 181),
    (150, 150, 150),
    (193, 190, 175),
]


def test_palette_is_the_originals_in_order():
    assert NUM_CLASSES == 7
    assert [c.rgb for c in CLASSES] == ORIGINAL_PALETTE
    assert [c.id for c in CLASSES] == list(range(7))
    assert len({c.name for c in CLASSES}) == 7


def _original_rule(rgb: np.ndarray) -> np.ndarray:
    # The original's rule, written the slow obvious way: argmin of the Euclidean RGB distance.
    diff = rgb[:, :, None, :].astype(np.float64) - np.array(ORIGINAL_PALETTE)[None, None]
    d = np.linalg.norm(diff, axis=-1)
    return d.argmin(-1)


def test_labels_match_original_rule_on_noisy_painted_pixels():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(40, 50))
    # Palette colours plus JPEG-like noise and soft-brush blends, as in the public *_i2.png files.
    rgb = PALETTE[ids].astype(np.int32) + rng.integers(-12, 13, size=(40, 50, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    got = labels_from_rgb(rgb)
    np.testing.assert_array_equal(got, _original_rule(rgb))
    assert (got == ids).mean() > 0.95


def test_rgba_uint16_and_float_inputs_agree():
    ids = np.arange(7).repeat(3).reshape(3, 7)
    rgb8 = PALETTE[ids]
    rgba = np.concatenate([rgb8, np.full(ids.shape + (1,), 7, np.uint8)], -1)
    np.testing.assert_array_equal(labels_from_rgb(rgba), ids)
    np.testing.assert_array_equal(labels_from_rgb(rgb8.astype(np.uint16) * 257), ids)
    np.testing.assert_array_equal(labels_from_rgb(rgb8 / 255.0), ids)


def test_round_trip_and_one_hot():
    ids = np.random.default_rng(1).integers(0, 7, size=(9, 11)).astype(np.uint8)
    np.testing.assert_array_equal(labels_from_rgb(rgb_from_labels(ids)), ids)
    oh = one_hot(ids)
    assert oh.shape == (7, 9, 11) and oh.dtype == np.float32
    np.testing.assert_array_equal(oh.sum(0), 1.0)
    np.testing.assert_array_equal(oh.argmax(0), ids)
    shares = class_shares(ids)
    assert abs(sum(shares.values()) - 1.0) < 1e-9


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((4, 4), np.uint8), "single-channel"),
        (np.zeros((4, 4, 2), np.uint8), "[H, W, 3 or 4]"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), (255, 0, 255), np.uint8), "far from the terrain palette"),
    ],
)
def test_bad_images_get_clear_errors(bad, words):
    with pytest.raises(LabelMapError, match=None) as e:
        labels_from_rgb(bad)
    assert words in str(e.value)


def test_check_labels_rejects_out_of_range_and_wrong_rank():
    with pytest.raises(LabelMapError, match="0..6"):
        check_labels(np.array([[0, 7]]))
    with pytest.raises(LabelMapError, match="2-D"):
        check_labels(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(LabelMapError, match="integer"):
        check_labels(np.zeros((2, 2), np.float32))


def test_presets_round_trip_and_validate():
    for name, c in cfgmod.PRESETS.items():
        assert cfgmod.GeneratorConfig.from_dict(c.to_dict()) == c, name
        assert c.downsample == 32
    assert cfgmod.preset("seed-1.0").stage_channels[0] == 768
    assert cfgmod.preset("seed-1.2").attention_stages == (2, 3)
    with pytest.raises(ValueError, match="conv_type"):
        cfgmod.GeneratorConfig(conv_type="nope")
    with pytest.raises(ValueError, match="attention_stages"):
        cfgmod.GeneratorConfig(attention_stages=(9,))
    with pytest.raises(ValueError, match="unknown generator config keys"):
        cfgmod.GeneratorConfig.from_dict({"bogus": 1})
    with pytest.raises(KeyError, match="known"):
        cfgmod.preset("huge")


def test_inputs_are_seeded_and_tile_crops_line_up():
    c = cfgmod.preset("tiny")
    a = draw_inputs(c, 128, 64, seed=5)
    b = draw_inputs(c, 128, 64, seed=5)
    d = draw_inputs(c, 128, 64, seed=6)
    assert a.z.shape == (1, 16) and 0 <= a.z.min() and a.z.max() < 1
    assert [n.shape for n in a.noises] == [(1, 1, 128 // f, 64 // f) for f in c.block_scales()]
    assert all(np.array_equal(x, y) for x, y in zip(a.noises, b.noises, strict=True))
    assert not np.array_equal(a.noises[-1], d.noises[-1])
    crop = a.crop(32, 0, 64, 64, c.downsample, c.block_scales())
    np.testing.assert_array_equal(crop.noises[-1][0, 0], a.noises[-1][0, 0, 32:96, 0:64])
    np.testing.assert_array_equal(crop.noises[0][0, 0], a.noises[0][0, 0, 1:3, 0:2])
    with pytest.raises(ValueError, match="multiple of 32"):
        draw_inputs(c, 100, 64, seed=0)


def test_one_seed_range_what_blender_can_hold():
    from terrain_core.noise import SEED_MAX, check_seed

    assert SEED_MAX == 2**31 - 1  # Blender's IntProperty is a signed 32-bit int
    assert check_seed(SEED_MAX) == SEED_MAX and check_seed(np.int64(3)) == 3
    for bad in (-1, SEED_MAX + 1, 2**63 - 1, 1.5, "7"):
        with pytest.raises(ValueError, match="seed must be"):
            check_seed(bad)
    with pytest.raises(ValueError, match="0..2147483647"):
        draw_inputs(cfgmod.preset("tiny"), 64, 64, seed=2**31)
