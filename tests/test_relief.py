"""The relief work: relief measures, the height-aware and mode-seeking losses, noise in the modulation,
warm start into grown convs and the compact resume state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from terrain_core.relief_metrics import (
    border_step,
    border_step_index,
    gradient_magnitude,
    land_border_distance,
    layout_detail_correlation,
    mean_slope_by_class,
)
from training.losses import border_zones, detail_stats_loss, diversity_loss, high_pass, slope_stats_loss

# ------------------------------------------------------------------------------------ relief measures


def two_class_map(n: int = 64) -> np.ndarray:
    lab = np.full((n, n), 1, np.uint8)  # plains
    lab[:, n // 2 :] = 5  # mountains on the right half
    return lab


def test_border_step_index_finds_a_step_at_the_border_and_not_in_unrelated_relief():
    lab = two_class_map()
    rng = np.random.default_rng(0)
    rough = rng.standard_normal(lab.shape)  # relief that ignores the classes
    stepped = np.where(lab == 5, 10.0, 0.0) + 0.01 * rough  # one class, one height: a terrace
    assert 0.8 < border_step_index(rough, lab) < 1.25
    assert border_step_index(stepped, lab) > 20
    # the index does not depend on the height scale
    assert border_step_index(rough * 1000, lab) == pytest.approx(border_step_index(rough, lab))
    # pooling sums over maps is the same as one map twice
    s = border_step(stepped, lab)
    assert (s + s).index == pytest.approx(s.index)


def test_border_step_index_ignores_coasts_and_needs_a_land_border():
    lab = np.zeros((32, 32), np.uint8)  # water
    lab[:, 16:] = 1
    h = np.where(lab == 0, 0.0, 5.0) + np.random.default_rng(1).standard_normal(lab.shape) * 0.01
    assert np.isinf(land_border_distance(lab)).all()
    assert np.isnan(border_step_index(h, lab))
    with pytest.raises(ValueError, match="same shape"):
        border_step_index(h, lab[:10])


def test_land_border_distance_by_hand():
    lab = two_class_map(8)
    d = land_border_distance(lab)
    assert d[0, 3] == 0 and d[0, 4] == 0  # both sides of the border
    assert d[0, 0] == 3 and d[5, 7] == 3


def test_mean_slope_by_class_against_a_plane():
    lab = two_class_map(16)
    yy, xx = np.mgrid[0:16, 0:16].astype(float)
    h = 2.0 * xx  # slope 2 units per cell everywhere
    sums, counts = mean_slope_by_class(h, lab, 7, cell=0.5)
    assert counts[1] == counts[5] == 128 and counts[0] == 0
    np.testing.assert_allclose(sums[[1, 5]] / counts[[1, 5]], 4.0)
    np.testing.assert_allclose(gradient_magnitude(h), 2.0)


def test_layout_detail_correlation_separates_layout_from_detail():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    layout = np.sin(3 * xx) + np.cos(2 * yy)
    same = [layout + 0.05 * rng.standard_normal((64, 64)) * 0 + 0.05 * np.sin(40 * xx)] * 2
    lo, de = layout_detail_correlation(same)
    assert lo == pytest.approx(1.0) and de == pytest.approx(1.0)
    new = [layout + 0.05 * rng.standard_normal((64, 64)) for _ in range(3)]
    lo, de = layout_detail_correlation(new)
    assert lo > 0.95 and abs(de) < 0.2
    with pytest.raises(ValueError, match="two seeds"):
        layout_detail_correlation(new[:1])


# --------------------------------------------------------------------------------------------- losses


def onehot_of(lab: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(lab.astype(np.int64))[None]
    return torch.nn.functional.one_hot(t, 7).permute(0, 3, 1, 2).float()


def slope_stats_reference(fake, real, lab, near_px=3, min_px=16) -> float:
    """Loop-by-loop version of slope_stats_loss for one sample."""

    def grad_mag(h):
        dy = np.diff(h, axis=0, prepend=h[:1] * 0)
        dy[0] = dy[1]
        dx = np.diff(h, axis=1, prepend=h[:, :1] * 0)
        dx[:, 0] = dx[:, 1]
        return np.sqrt(dy**2 + dx**2 + 1e-12)

    n = lab.shape[0]
    near = np.zeros_like(lab, bool)
    for y in range(n):
        for x in range(n):
            win = lab[max(0, y - near_px) : y + near_px + 1, max(0, x - near_px) : x + near_px + 1]
            near[y, x] = len(set(win[win != 0].tolist())) >= 2
    gf, gr = grad_mag(fake), grad_mag(real)
    diffs = []
    for c in range(7):
        for zone in (near, ~near):
            m = (lab == c) & zone
            if m.sum() >= min_px:
                diffs.append(abs(np.log(gf[m].mean() + 1e-4) - np.log(gr[m].mean() + 1e-4)))
    return float(np.mean(diffs))


def test_slope_stats_loss_matches_the_loop_reference_and_is_zero_for_equal_slopes():
    lab = two_class_map(32)
    lab[:8, :8] = 0  # some water
    rng = np.random.default_rng(0)
    fake = rng.standard_normal((32, 32)) * 0.01
    real = rng.standard_normal((32, 32)) * 0.03
    oh = onehot_of(lab)
    got = slope_stats_loss(torch.tensor(fake)[None, None].float(), torch.tensor(real)[None, None].float(), oh)
    assert float(got) == pytest.approx(slope_stats_reference(fake, real, lab), rel=1e-4)
    same = torch.tensor(real)[None, None].float()
    assert float(slope_stats_loss(same, same.clone(), oh)) == pytest.approx(0.0, abs=1e-6)
    # a step at the border costs, although the mean slope over the whole map could match
    step = torch.tensor(np.where(lab == 5, 0.5, 0.0))[None, None].float()
    assert float(slope_stats_loss(step, same, oh)) > 1.0
    # zones: the border columns of the two land classes, not the coast
    z = border_zones(oh, 3)[0, 0]
    assert z[20, 13:19].all() and not z[20, :13].any() and not z[20, 19:].any() and not z[2, 2]


def test_slope_stats_loss_gradient_flows_to_the_fake_only():
    lab = two_class_map(32)
    fake = (torch.randn(1, 1, 32, 32) * 1e-3).requires_grad_(True)  # near-flat, as a smooth interior
    real = torch.randn(1, 1, 32, 32, requires_grad=True)
    slope_stats_loss(fake, real, onehot_of(lab)).backward()
    assert fake.grad.abs().sum() > 0 and real.grad is None


def test_diversity_loss_rewards_different_detail_up_to_the_cap():
    torch.manual_seed(0)
    a = torch.randn(2, 1, 16, 16)
    assert float(diversity_loss((a,), (a.clone(),))) == 0.0
    b = a + 0.01 * torch.randn(2, 1, 16, 16)
    c = a + 10.0 * torch.randn(2, 1, 16, 16)
    assert -0.05 < float(diversity_loss((a,), (b,))) < 0
    assert float(diversity_loss((a,), (c,), cap=0.05)) == pytest.approx(-0.05)
    # a shift of the whole map is layout, not detail: the high pass removes it
    assert float(diversity_loss((a,), (a + 3.0,))) == pytest.approx(0.0, abs=1e-5)
    assert high_pass(torch.ones(1, 1, 8, 8)).abs().max() < 1e-6


def test_diversity_loss_land_mask_ignores_differences_on_water():
    torch.manual_seed(0)
    a = torch.randn(1, 1, 16, 16)
    b = a.clone()
    b[..., :8] += torch.randn(1, 1, 16, 8)  # differs only on the left half
    water_left = torch.zeros(1, 1, 16, 16)
    water_left[..., 8:] = 1.0  # land: the right half
    assert float(diversity_loss((a,), (b,), cap=10.0, mask=water_left)) > -0.2  # only the high-pass bleed
    assert float(diversity_loss((a,), (b,), cap=10.0)) < -0.3


def test_the_trainer_pays_for_seed_differences_on_land_only_unless_told_otherwise():
    from training.train import Trainer
    from training.train_config import load_config

    water = np.zeros((2, 64, 64), np.int64)  # maps of water only: no land to diversify
    batch = {
        "onehot": torch.nn.functional.one_hot(torch.from_numpy(water), 7).permute(0, 3, 1, 2).float(),
        "terrain": torch.zeros(2, 3, 64, 64),
        "height": torch.zeros(2, 1, 64, 64),
    }
    sets = ["generator.noise_style=true", "diversity_weight=1", "dynamic_ratio=false", "perceptual=off"]
    land_only = Trainer(load_config("tiny", sets)).train_step(batch)
    everywhere = Trainer(load_config("tiny", [*sets, "diversity_land_only=false"])).train_step(batch)
    assert land_only["diversity"] == 0.0
    assert everywhere["diversity"] < 0.0


def test_detail_stats_loss_penalises_speckled_water_and_flat_land():
    lab = np.zeros((32, 32), np.uint8)
    lab[:, 16:] = 5  # water | mountains
    oh = onehot_of(lab)
    torch.manual_seed(0)
    real = torch.zeros(1, 3, 32, 32)
    real[..., 16:] = torch.randn(1, 3, 32, 16) * 0.1  # detailed land, smooth water
    assert float(detail_stats_loss(real, real.clone(), oh)) == 0.0
    speckled = real.clone()
    speckled[..., :16] += torch.randn(1, 3, 32, 16) * 0.1
    flat_land = real.clone()
    flat_land[..., 16:] = 0.0
    assert float(detail_stats_loss(speckled, real, oh)) > 1.0
    assert float(detail_stats_loss(flat_land, real, oh)) > 1.0
    # loop reference for one sample: per class, |log mean|hp fake| - log mean|hp real||
    hp_f, hp_r = high_pass(speckled).abs().mean(1)[0], high_pass(real).abs().mean(1)[0]
    ref = np.mean(
        [
            abs(np.log(float(hp_f[m].mean()) + 1e-3) - np.log(float(hp_r[m].mean()) + 1e-3))
            for m in (torch.from_numpy(lab == 0), torch.from_numpy(lab == 5))
        ]
    )
    assert float(detail_stats_loss(speckled, real, oh)) == pytest.approx(ref, rel=1e-4)


# ----------------------------------------------------------------------------- noise in the modulation


def test_noise_style_makes_the_noise_change_the_output_even_with_injection_off():
    from terrain_core.config import preset
    from terrain_core.nn.generator import Generator

    cfg = preset("tiny").replace(noise=False, noise_style=True)
    torch.manual_seed(0)
    g = Generator(cfg).eval()
    oh = onehot_of(two_class_map(64))
    z = torch.rand(1, cfg.z_dim)
    noises = [torch.randn(1, 1, 64 // f, 64 // f) for f in cfg.block_scales()]
    other = [torch.randn_like(n) for n in noises]
    with torch.no_grad():
        a, b = g(oh, z, noises), g(oh, z, other)
    assert (a - b).abs().mean() > 1e-3
    plain = Generator(cfg.replace(noise_style=False)).eval()
    with torch.no_grad():
        assert torch.equal(plain(oh, z, noises), plain(oh, z, other))  # the control: noise unused


def test_warm_start_into_convs_with_more_inputs_keeps_the_function(tmp_path):
    from terrain_core.config import ShadowConfig, preset
    from terrain_core.model_export import export_model
    from training.nets import TrainGenerator, warm_start

    old_cfg = preset("tiny").replace(noise_style=False)
    torch.manual_seed(0)
    old = TrainGenerator(old_cfg, ShadowConfig()).eval()
    with torch.no_grad():  # non-zero noise scales so that the noise matters in both models
        for m in old.modules():
            if hasattr(m, "weight") and type(m).__name__ == "NoiseInjection":
                m.weight.fill_(0.3)
    st, _ = export_model(
        old,
        tmp_path / "old",
        metadata={"name": "old"},
        gen_config=old_cfg,
        shadow_config=ShadowConfig(),
        onnx=False,
    )
    new = TrainGenerator(old_cfg.replace(noise_style=True), ShadowConfig()).eval()
    ws = warm_start(new, str(st))
    assert not ws.fresh and any("seg_conv" in k for k in ws.loaded)
    oh = onehot_of(two_class_map(64))
    z = torch.rand(1, old_cfg.z_dim)
    noises = [torch.randn(1, 1, 64 // f, 64 // f) for f in old_cfg.block_scales()]
    with torch.no_grad():
        a = old.generate(oh, z, noises)
        b = new.generate(oh, z, noises)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


# ---------------------------------------------------------------------------------- resume state


def test_resume_state_round_trip_in_fp16(tmp_path):
    from training.resume_state import ResumeStateError, load_resume_state, save_resume_state
    from training.train import Trainer
    from training.train_config import load_config

    cfg = load_config("tiny", ["generator.noise_style=true"])
    a = Trainer(cfg)
    a.g_updates, a.g_on = 123, False
    path = save_resume_state(a, tmp_path / "state.safetensors", history=[{"steps": 10}])
    assert path.stat().st_size < 2 * 2 * sum(p.numel() for p in (*a.gen.parameters(), *a.disc.parameters()))
    torch.manual_seed(5)
    b = Trainer(cfg.replace(seed=7))
    assert not all(torch.equal(x, y) for x, y in zip(a.gen.parameters(), b.gen.parameters(), strict=True))
    info = load_resume_state(b, path)
    for na, nb in ((a.gen, b.gen), (a.disc, b.disc), (a.ema, b.ema)):
        for x, y in zip(na.state_dict().values(), nb.state_dict().values(), strict=True):
            torch.testing.assert_close(x.half().float(), y)  # fp16-exact
    assert b.g_updates == 123 and b.g_on is False
    assert [r["steps"] for r in info["history"]] == [10, 0]
    # another model does not fit; a model file is not a resume state
    with pytest.raises(ResumeStateError, match="does not fit"):
        load_resume_state(Trainer(load_config("tiny")), path)
    from safetensors.torch import save_file

    other = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something"})
    with pytest.raises(ResumeStateError, match="init_from"):
        load_resume_state(b, other)
    with pytest.raises(ResumeStateError, match="does not exist"):
        load_resume_state(b, tmp_path / "none.safetensors")


def test_resume_from_through_the_trainer(tmp_path, capsys):
    from tests.train_helpers import build_procedural
    from training.train import main as train_main

    data = build_procedural(tmp_path / "data", count=4)
    common = ["--config", "tiny", "--data", str(data), "--max-steps", "2", "--set", "workers=0"]
    common += ["--set", "sample_count=0", "--set", "export_onnx=false", "--set", "generator.noise_style=true"]
    common += ["--set", "slope_stats_weight=1", "--set", "diversity_weight=1"]
    assert train_main([*common, "--out", str(tmp_path / "a")]) == 0
    state = tmp_path / "a" / "resume_state.safetensors"
    assert state.is_file()
    assert train_main([*common, "--out", str(tmp_path / "b"), "--resume-from", str(state)]) == 0
    assert "continuing from the resume state" in capsys.readouterr().out
    rows = [json.loads(x) for x in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert all("slope_stats" in r and "diversity" in r for r in rows if r["g_on"])
    from terrain_core.model_format import read_safetensors_header

    meta, _ = read_safetensors_header(tmp_path / "b" / "export" / "model.safetensors")
    prov = json.loads(meta["provenance"]) if isinstance(meta.get("provenance"), str) else meta["provenance"]
    assert [r["steps"] for r in prov["campaign"]] == [2]
    assert train_main([*common, "--out", str(tmp_path / "c"), "--resume-from", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err

    # Shipping writes the shipped checkpoint's state, with the whole campaign, where the next run finds it.
    from training.resume_state import read_resume_state
    from training.ship import write_resume_state

    dest = write_resume_state(tmp_path / "b", None, tmp_path / "resume" / "default-state.safetensors")
    meta, tensors = read_resume_state(dest)
    assert [r["steps"] for r in json.loads(meta["history"])] == [2, 2]
    assert all(t.dtype == torch.float16 for k, t in tensors.items() if t.is_floating_point())
    assert {k.split(".")[0] for k in tensors} == {"g", "d", "ema"}
    # results brought back from the GPU script: no checkpoint, the run's own state is installed as it is
    gpu_run = tmp_path / "gpu"
    gpu_run.mkdir()
    (gpu_run / "resume_state.safetensors").write_bytes(state.read_bytes())
    dest2 = write_resume_state(gpu_run, None, tmp_path / "resume2" / "default-state.safetensors")
    assert dest2.read_bytes() == state.read_bytes()
