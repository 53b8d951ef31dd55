"""Pure parts of training: losses, the D:G switch, learning-rate schedule, config loading."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    discriminator_losses,
    feature_matching,
    generator_adv_losses,
    r1_penalty,
    split_batch,
    update_g_enabled,
    weighted_total,
)
from training.train import lr_factor, step_seed
from training.train_config import ConfigError, config_to_toml, load_config, preset_names


def _d_out(values: list[float], feats: float = 0.0):
    """A fake 2-scale D output whose logits are the given constants per sample."""
    out = []
    for s in (4, 2):
        lg = torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, s, s).clone()
        out.append((lg, [torch.full((len(values), 3, s, s), feats)]))
    return out


def test_hinge_terms_match_the_original_formulas():
    real, fake, flip = _d_out([0.5, 2.0]), _d_out([-0.5, 0.0]), _d_out([1.0, -3.0])
    t = discriminator_losses(real, fake, flip)
    r = (0.5 + 0.0) / 2  # relu(1 - 0.5), relu(1 - 2)
    f = (0.5 + 1.0) / 2  # relu(1 - 0.5), relu(1 + 0)
    fl = (2.0 + 0.0) / 2
    assert t["d_real"].item() == pytest.approx(r)
    assert t["d_total"].item() == pytest.approx(2 * r + f + fl)
    g = generator_adv_losses(fake, flip)
    assert g["g_adv"].item() == pytest.approx(0.25) and g["g_adv_flip"].item() == pytest.approx(1.0)
    # One route only: a single hinge.
    assert discriminator_losses(real, fake)["d_total"].item() == pytest.approx(r + f)
    # An untrained D (logits 0) gives 4 over both routes: the scale of the 2.0 / 1.5 thresholds.
    z = _d_out([0.0, 0.0])
    assert discriminator_losses(z, z, z)["d_total"].item() == pytest.approx(4.0)


def test_split_batch_and_feature_matching():
    both = _d_out([1.0, 2.0, 3.0, 4.0])
    a, b = split_batch(both, 2)
    assert a[0][0].flatten().unique().tolist() == [1.0, 2.0]
    assert b[1][0].flatten().unique().tolist() == [3.0, 4.0]
    assert feature_matching(_d_out([0, 0], 1.0), _d_out([0, 0], 1.0)).item() == 0.0
    assert feature_matching(_d_out([0, 0], 1.5), _d_out([0, 0], 1.0)).item() == pytest.approx(0.5)


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    w = torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = [(x * w).sum(1, keepdim=True)]
    # grad of sum D(x) per sample = w at each of 16 pixels -> |grad|^2 = 16 * 14
    assert r1_penalty(logits, x).item() == pytest.approx(16 * 14.0)


def test_weighted_total_skips_zero_weights():
    t = {"a": torch.tensor(2.0), "b": torch.tensor(5.0)}
    assert weighted_total(t, {"a": 1.0, "b": 0.0}).item() == 2.0
    assert weighted_total(t, {"a": 0.5, "b": 0.1}).item() == pytest.approx(1.5)
    with pytest.raises(ValueError):
        weighted_total(t, {"a": 0.0})


def test_dynamic_ratio_switch_has_hysteresis():
    on = True
    seen = []
    for loss in [3.0, 1.9, 1.6, 1.49, 1.9, 2.0, 1.0, float("nan"), 2.5]:
        on = update_g_enabled(on, loss, 2.0, 1.5)
        seen.append(on)
    # off at >= 2.0, stays off until < 1.5, stays on until >= 2.0; NaN changes nothing
    assert seen == [False, False, False, True, True, False, True, True, False]


def test_lr_schedules():
    cfg = load_config("tiny", ["lr_schedule=cosine", "lr_warmup_steps=10", "lr_final_fraction=0.1"])
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(10, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.55)
    assert lr_factor(110, 110, cfg) == pytest.approx(0.1)
    lin = cfg.replace(lr_schedule="linear", lr_warmup_steps=0)
    assert lr_factor(50, 100, lin) == pytest.approx(0.55)
    assert lr_factor(50, 100, cfg.replace(lr_schedule="constant", lr_warmup_steps=0)) == 1.0


def test_step_seeds_differ_by_step_rank_and_stream():
    seeds = {step_seed(0, s, r, k) for s in range(20) for r in range(2) for k in (1, 2)}
    assert len(seeds) == 80 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(5, 3, 1, 1) == step_seed(5, 3, 1, 1)


def test_presets_and_defaults_are_the_originals():
    assert set(preset_names()) >= {"seed-1.0", "seed-1.1", "seed-1.2", "small", "tiny"}
    c = load_config("seed-1.1")
    assert (c.g_lr, c.g_beta1, c.g_clip, c.d_lr, c.d_beta1) == (1e-4, 0.5, 100.0, 1e-3, 0.5)
    assert (c.d_loss_upper, c.d_loss_lower, c.perceptual_weight, c.batch_size) == (2.0, 1.5, 0.001, 4)
    assert c.flip_route and c.dynamic_ratio and c.perceptual == "vgg"
    assert load_config("seed-1.0").generator_config().conv_type == "spade"
    assert load_config("seed-1.2").generator_config().attention_stages == (2, 3)


def test_overrides_roundtrip_and_errors(tmp_path):
    c = load_config("tiny", ["g_lr=2e-4", "generator.noise=false", "discriminator.base_channels=4", "split="])
    assert c.g_lr == 2e-4 and not c.generator_config().noise and c.discriminator_config().base_channels == 4
    assert c.split == ""
    f = tmp_path / "c.toml"
    f.write_text(config_to_toml(c))
    assert load_config(str(f)) == c
    for bad, msg in [
        (["nope=1"], "unknown training config keys"),
        (["g_lr=fast"], "g_lr must be a number"),
        (["generator.nope=1"], "unknown [generator] keys"),
        (["crop=100"], "multiple of"),
        (["d_loss_lower=3"], "must not exceed"),
        (["amp=fp8"], "amp must be one of"),
        (["g_lr"], "key=value"),
    ]:
        with pytest.raises(ConfigError, match=re_escape(msg)):
            load_config("tiny", bad)
    with pytest.raises(ConfigError, match="neither a TOML file nor a preset"):
        load_config("no-such-preset")
    assert math.isfinite(load_config("tiny").ema_decay)


def re_escape(s: str) -> str:
    import re

    return re.escape(s)


def test_r1_penalty_can_leave_out_the_conditioning_channels():
    w = torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = [(x * w).sum(1, keepdim=True)]
    assert r1_penalty(logits, x, first_channel=1).item() == pytest.approx(16 * 13.0)
