"""Generator, shadow generator, discriminator and InferenceNet: shapes, checks, determinism, export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from terrain_core.config import (  # noqa: E402
    DISCRIMINATOR_PRESETS,
    PRESETS,
    GeneratorConfig,
    ShadowConfig,
    preset,
)
from terrain_core.nn import build_inference_net, param_count  # noqa: E402
from terrain_core.nn.discriminator import MultiScaleDiscriminator, discriminator_input  # noqa: E402
from terrain_core.nn.generator import Generator  # noqa: E402
from terrain_core.nn.layers import NoiseInjection  # noqa: E402
from terrain_core.nn.shadow import ShadowGenerator  # noqa: E402
from terrain_core.noise import draw_inputs  # noqa: E402

TINY = PRESETS["tiny"]
# tiny, with every optional feature of v1.2 switched on (attention at 4x4+ features, Scaled Sum)
TINY_12 = TINY.replace(
    attention_stages=(2, 3), attention_kernel=5, scaled_sum=True, scaled_sum_stages=(0, 1, 2, 3)
)


def _inputs(cfg: GeneratorConfig, h: int, w: int, n: int = 2, seed: int = 0):
    inp = draw_inputs(cfg, h, w, seed=seed, batch=n)
    labels = np.random.default_rng(seed).integers(0, cfg.num_classes, (n, h, w))
    onehot = np.eye(cfg.num_classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2).copy()
    return torch.from_numpy(onehot), torch.from_numpy(inp.z), [torch.from_numpy(a) for a in inp.noises]


def _liven(module: torch.nn.Module, seed: int = 0) -> None:
    """Make a fresh model's output depend visibly on its inputs (zero-initialised noise scales and biases
    otherwise hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, NoiseInjection):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


def _check_outputs(net, cfg, h, w, n=2):
    onehot, z, noises = _inputs(cfg, h, w, n)
    with torch.no_grad():
        tex, height, shaded = net(onehot, z, *noises)
    assert tex.shape == (n, 3, h, w) and shaded.shape == (n, 3, h, w) and height.shape == (n, 1, h, w)
    for t in (tex, height, shaded):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    assert 0.0 <= float(tex.min()) and float(tex.max()) <= 1.0
    assert 0.0 <= float(shaded.min()) and float(shaded.max()) <= 1.0
    assert -1.0 <= float(height.min()) and float(height.max()) <= 1.0


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_small_presets_shapes(name, size):
    torch.manual_seed(0)
    _check_outputs(build_inference_net(PRESETS[name], ShadowConfig()), PRESETS[name], *size)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed-1.0", "seed-1.1", "seed-1.2"])
def test_seed_presets_shapes(name):
    torch.manual_seed(0)
    net = build_inference_net(PRESETS[name], ShadowConfig())
    _check_outputs(net, PRESETS[name], 32, 32, n=1)
    _check_outputs(net, PRESETS[name], 64, 32, n=1)


@pytest.mark.parametrize(
    "cfg",
    [
        TINY.replace(output_mode="skip_rgb"),
        TINY.replace(output_mode="skip_features"),
        TINY.replace(conv_type="spade", spade_hidden=8),
        TINY_12,
        TINY_12.replace(attention_heads=4, output_mode="skip_features", noise=False),
    ],
    ids=["skip_rgb", "skip_features", "spade", "v1.2-features", "heads-nonoise"],
)
def test_variants_shapes_and_gradients(cfg):
    torch.manual_seed(0)
    gen = Generator(cfg)
    _liven(gen)
    onehot, z, noises = _inputs(cfg, 64, 32)
    raw = gen(onehot, z, noises)
    assert raw.shape == (2, 4, 64, 32) and torch.isfinite(raw).all()
    raw.square().mean().backward()
    grads = [p.grad for p in gen.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the output depends on the segmentation (the whole point of the model)
    with torch.no_grad():
        other = gen(onehot.flip(2), z, noises)
    assert not torch.allclose(raw.detach(), other)


def test_shortcut_spade_by_default_and_modconv_as_option():
    # the original's SPADE shortcut is the default; a modulated 1x1 shortcut is an option
    gen_default = Generator(TINY)
    assert any(hasattr(b, "short_norm") for s in gen_default.stages for b in s)
    gen_mod = Generator(TINY.replace(shortcut="modconv"))
    assert any(hasattr(b, "short_mod") for s in gen_mod.stages for b in s)
    onehot, z, noises = _inputs(TINY, 32, 32)
    assert gen_mod(onehot, z, noises).shape == (2, 4, 32, 32)


def test_fresh_small_generator_responds_to_the_segmentation_at_unit_scale():
    """Demodulated convs shrink their input by about 1/sqrt(area) whatever the weights; the SPADE
    shortcut's instance norm is what carries the segmentation at full scale. With modulated shortcuts the
    output of a fresh 'small' generator was the same on both halves of a two-class map (difference 2e-8),
    and a model trained that way learned nothing of the map."""
    torch.manual_seed(0)
    cfg = preset("small")
    gen = Generator(cfg).eval()
    lab = torch.zeros(128, 128, dtype=torch.long)
    lab[:, 64:] = 5
    onehot = torch.nn.functional.one_hot(lab, 7).permute(2, 0, 1)[None].float()
    _, z, noises = _inputs(cfg, 128, 128, n=1)
    with torch.no_grad():
        out = gen(onehot, z, noises)
    halves = out[0, :, :, :64].mean((1, 2)) - out[0, :, :, 64:].mean((1, 2))
    assert halves.abs().max() > 0.1
    assert out.std() > 0.1


def test_noise_has_no_effect_at_init_then_does():
    torch.manual_seed(0)
    gen = Generator(TINY)
    onehot, z, noises = _inputs(TINY, 32, 64)
    other = [torch.randn_like(n) for n in noises]
    with torch.no_grad():
        a, b = gen(onehot, z, noises), gen(onehot, z, other)
        assert torch.equal(a, b)
        for m in gen.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
        assert not torch.allclose(gen(onehot, z, noises), gen(onehot, z, other))


def test_deterministic():
    torch.manual_seed(7)
    net1 = build_inference_net(TINY_12, ShadowConfig())
    torch.manual_seed(7)
    net2 = build_inference_net(TINY_12, ShadowConfig())
    _liven(net1)
    _liven(net2)
    onehot, z, noises = _inputs(TINY_12, 64, 64, seed=3)
    with torch.no_grad():
        out1 = net1(onehot, z, *noises)
        out1b = net1(onehot, z, *noises)
        out2 = net2(onehot, z, *noises)
    for a, b, c in zip(out1, out1b, out2, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    # the latent changes the result
    with torch.no_grad():
        out3 = net1(onehot, torch.rand_like(z), *noises)
    assert not torch.allclose(out1[0], out3[0])


def test_shape_check_errors():
    gen = Generator(TINY)
    onehot, z, noises = _inputs(TINY, 32, 64)
    with pytest.raises(ValueError, match="8 channels but the model has 7 classes"):
        gen(torch.zeros(2, 8, 32, 64), z, noises)
    with pytest.raises(ValueError, match=r"\[N, 7, H, W\]"):
        gen(onehot[0], z, noises)
    with pytest.raises(ValueError, match="multiples of 32"):
        gen(onehot[:, :, :31], z, noises)
    bad = onehot.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="onehot contains NaN"):
        gen(bad, z, noises)
    with pytest.raises(ValueError, match="z must be"):
        gen(onehot, z[:1], noises)
    with pytest.raises(ValueError, match=f"need {len(noises)} noise maps"):
        gen(onehot, z, noises[:-1])
    wrong = list(noises)
    wrong[2] = torch.zeros(2, 1, 3, 3)
    with pytest.raises(ValueError, match="noise map 2 must be"):
        gen(onehot, z, wrong)
    nan_noise = list(noises)
    nan_noise[0] = torch.full_like(noises[0], float("nan"))
    with pytest.raises(ValueError, match="noise map 0 contains NaN"):
        gen(onehot, z, nan_noise)
    with pytest.raises(ValueError, match="float tensor"):
        gen(onehot.long(), z, noises)
    with pytest.raises(ValueError, match=r"\[N, 4, H, W\]"):
        ShadowGenerator(ShadowConfig())(torch.zeros(1, 3, 8, 8))


def test_shadow_generator_shades_l_only():
    torch.manual_seed(0)
    shadow = ShadowGenerator(ShadowConfig())
    raw = torch.randn(2, 4, 16, 24)
    out = shadow(raw)
    assert set(out) == {"texture_lab", "height", "shaded_lab"}
    torch.testing.assert_close(out["texture_lab"], torch.tanh(raw[:, :3]))
    torch.testing.assert_close(out["height"], torch.tanh(raw[:, 3:]))
    torch.testing.assert_close(out["shaded_lab"][:, 1:], out["texture_lab"][:, 1:])
    assert not torch.allclose(out["shaded_lab"][:, :1], out["texture_lab"][:, :1])
    # flat ground gets the same shading everywhere (it sees only height differences)
    with torch.no_grad():
        shade = shadow.shading(torch.full((1, 1, 16, 24), 0.3))
        slope = shadow.shading(torch.linspace(-1, 1, 16).view(1, 1, 16, 1).expand(1, 1, 16, 24))
    torch.testing.assert_close(shade, torch.full_like(shade, float(shade[0, 0, 0, 0])))
    assert not torch.allclose(slope, shade)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_discriminator_shapes(preset):
    cfg = DISCRIMINATOR_PRESETS[preset]
    d = MultiScaleDiscriminator(cfg)
    onehot, _, _ = _inputs(TINY, 128, 64)
    x = discriminator_input(onehot, torch.rand(2, 3, 128, 64) * 2 - 1, torch.rand(2, 1, 128, 64))
    assert x.shape == (2, 13, 128, 64)
    out = d(x)
    assert len(out) == len(cfg.scales)
    for (logits, feats), s in zip(out, cfg.scales, strict=True):
        h, w = 128 // s, 64 // s
        for _ in range(cfg.num_convs):  # stride 2 with padding 1: ceil halving
            h, w = (h + 1) // 2, (w + 1) // 2
        assert logits.shape == (2, 1, h, w)
        assert len(feats) == cfg.num_convs
        assert feats[-1].shape[1] == min(cfg.base_channels * 2 ** (cfg.num_convs - 1), cfg.max_channels)
    sum(lg.mean() for lg, _ in out).backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError, match="13"):
        d(x[:, :12])
    with pytest.raises(ValueError, match="does not match"):
        discriminator_input(onehot, torch.zeros(2, 3, 64, 64), torch.zeros(2, 1, 128, 64))


def test_param_count():
    gen = Generator(TINY)
    assert param_count(gen) == sum(p.numel() for p in gen.parameters())
    assert param_count(Generator(PRESETS["small"])) > param_count(gen)


@pytest.mark.slow
def test_onnx_export_dynamic_shapes_matches_torch(tmp_path):
    """Every layer kind (attention, Scaled Sum, modulated and SPADE convs) exports with dynamic batch and
    size, and ONNX Runtime agrees with eager torch at sizes other than the example's."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from torch.export import Dim

    cfg = TINY_12.replace(stage_channels=(8, 8, 8, 8, 4, 4))
    torch.manual_seed(0)
    net = build_inference_net(cfg, ShadowConfig(hidden=8))
    _liven(net)
    onehot, z, noises = _inputs(cfg, 64, 64, n=2)
    ds = cfg.downsample
    b, hb, wb = Dim("batch", min=1, max=64), Dim("hb", min=1, max=128), Dim("wb", min=1, max=128)
    dyn = (
        {0: b, 2: ds * hb, 3: ds * wb},
        {0: b},
        tuple({0: b, 2: (ds // f) * hb, 3: (ds // f) * wb} for f in cfg.block_scales()),
    )
    names = ["onehot", "z"] + [f"noise{i}" for i in range(len(noises))]
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net,
        (onehot, z, *noises),
        str(path),
        dynamo=True,
        dynamic_shapes=dyn,
        input_names=names,
        output_names=["texture", "height", "shaded"],
        verbose=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w, n in [(32, 96, 1), (96, 64, 3)]:
        onehot, z, noises = _inputs(cfg, h, w, n=n, seed=h + w)
        with torch.no_grad():
            want = net(onehot, z, *noises)
        got = sess.run(None, {k: v.numpy() for k, v in zip(names, [onehot, z, *noises], strict=True)})
        for a, g in zip(want, got, strict=True):
            assert g.shape == tuple(a.shape)
            np.testing.assert_allclose(g, a.numpy(), atol=5e-4, rtol=0)  # float32 through Lab->sRGB gamma
        assert float(want[1].std()) > 1e-3  # the comparison is not between two constant images
