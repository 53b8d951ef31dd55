"""One training step of the tiny preset on CPU: both routes, the switch, EMA, NaN handling, VGG19."""

from __future__ import annotations

import pytest
import torch

from training.nets import draw_flips, flip_per_sample
from training.train import Trainer, TrainingDiverged
from training.train_config import load_config
from training.vgg import VGG19Features, VGGWeightsError, load_vgg19, perceptual_l1


def make_batch(n: int = 2, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 7, (n, size // 16, size // 16), generator=g)
    labels = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)  # [N, H, W] blocky map
    return {
        "onehot": torch.nn.functional.one_hot(labels, 7).permute(0, 3, 1, 2).float(),
        "labels": labels,
        "terrain": torch.rand((n, 3, size, size), generator=g) * 2 - 1,
        "height": torch.rand((n, 1, size, size), generator=g) * 2 - 1,
    }


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random VGG19 weights in the torchvision layout (plus a classifier key, as the real file has)."""
    torch.manual_seed(0)
    net = VGG19Features()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return path


def test_flips_move_the_right_samples():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    y = flip_per_sample(x, torch.tensor([True, False]), torch.tensor([True, False]))
    assert torch.equal(y[0], x[0].flip(2).flip(1)) and torch.equal(y[1], x[1])
    g = torch.Generator().manual_seed(0)
    lr, ud = draw_flips(4000, g, no_identity=True)
    assert not (~lr & ~ud).any()  # never unflipped
    lr, ud = draw_flips(4000, g)
    assert 0.2 < (~lr & ~ud).float().mean() < 0.3  # the original: each flip with p = 1/2


def test_step_trains_d_always_and_g_only_while_on():
    t = Trainer(load_config("tiny"))
    b = make_batch()
    g0, d0 = params(t.gen), params(t.disc)
    s = t.train_step(b)
    # both routes were judged and both adversarial terms reached G
    assert {"d_fake", "d_fake_flip", "g_adv", "g_adv_flip", "fm"} <= set(s)
    assert s["g_on"] == 1.0 and not same(g0, params(t.gen)) and not same(d0, params(t.disc))
    # An untrained D has loss ~4 >= 2.0: the switch turned G off for the next step.
    assert s["d_total"] >= 2.0 and t.g_on is False
    g1, d1 = params(t.gen), params(t.disc)
    s = t.train_step(b)
    assert s["g_on"] == 0.0 and "g_adv" not in s
    assert same(g1, params(t.gen)) and not same(d1, params(t.disc))
    assert (t.d_updates, t.g_updates, t.step) == (2, 1, 2)


def test_single_route_and_fixed_ratio():
    t = Trainer(load_config("tiny", ["flip_route=false", "dynamic_ratio=false", "perceptual=off"]))
    b = make_batch()
    for _ in range(2):
        s = t.train_step(b)
        assert "d_fake_flip" not in s and "g_adv_flip" not in s and "fm" not in s
        assert s["g_on"] == 1.0
    assert t.g_updates == 2


def test_ema_follows_the_generator():
    t = Trainer(load_config("tiny", ["ema_decay=0.5", "ema_warmup=false", "dynamic_ratio=false"]))
    before = params(t.ema)
    assert same(before, params(t.gen))
    t.train_step(make_batch())
    after_g = params(t.gen)
    for e, p0, p1 in zip(params(t.ema), before, after_g, strict=True):
        torch.testing.assert_close(e, 0.5 * p0 + 0.5 * p1)
    assert t.export_net() is t.ema
    assert Trainer(load_config("tiny", ["ema_decay=0"])).export_net() is not None


def test_nan_steps_are_skipped_counted_and_stop_training():
    t = Trainer(load_config("tiny", ["max_bad_steps=3"]))
    good, bad = make_batch(), make_batch()
    bad["terrain"][0, 0, 0, 0] = float("nan")  # a broken real image poisons the D loss
    g0, d0 = params(t.gen), params(t.disc)
    s = t.train_step(bad)
    assert s["skipped"] == 1.0 and t.bad_total == 1 and t.bad_in_a_row == 1
    assert same(g0, params(t.gen)) and same(d0, params(t.disc)) and t.step == 1
    assert t.g_on is True  # the switch ignores a NaN step
    s = t.train_step(good)
    assert s["skipped"] == 0.0 and t.bad_in_a_row == 0 and t.bad_total == 1
    t.train_step(bad)
    t.train_step(bad)
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        t.train_step(bad)
    assert t.bad_total == 4


def test_vgg_perceptual_loss_from_a_local_file(vgg_file):
    net, where = load_vgg19(vgg_file)
    assert where == str(vgg_file)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    assert perceptual_l1(net, x * 2 - 1, x.detach() * 2 - 1).item() == 0.0
    loss = perceptual_l1(net, x * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1)
    loss.backward()
    assert loss.item() > 0 and x.grad.abs().sum() > 0
    assert len(net(torch.rand(1, 3, 32, 32))) == 5
    h = torch.rand(1, 1, 32, 32) * 2 - 1
    assert perceptual_l1(net, h, h).item() == 0.0  # height: replicated to three channels
    # ... and the trainer uses it
    t = Trainer(load_config("tiny", [f"vgg_weights={str(vgg_file)!r}"]))
    assert t.perceptual_source.startswith("vgg19") and t.fm_weight == 0.0
    s = t.train_step(make_batch())
    assert s["perc_rgb"] > 0 and s["perc_h"] > 0 and "fm" not in s


def test_vgg_missing_or_wrong_weights(tmp_path):
    with pytest.raises(VGGWeightsError, match="does not exist"):
        load_vgg19(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(VGGWeightsError, match="missing"):
        load_vgg19(bad)
    # No explicit file, nothing cached (TORCH_HOME is a fresh temp dir in tests), download off.
    net, why = load_vgg19(None, allow_download=False)
    assert net is None and "downloading is off" in why
    logs = []
    t = Trainer(load_config("tiny"), log=logs.append)
    assert t.vgg is None and t.fm_weight == 1.0 and len(logs) == 1 and "feature matching" in logs[0]
