"""The trainer's GPU paths, checked on the CPU: resume off the CPU, bf16 heights, fp16 + GradScaler,
compile with R1, device placement under fake CUDA tensors, host syncs per step, the wall-clock stop and
the VGG download that must never hang.

Stand-ins for what this machine lacks: ``meta`` plays the GPU for the resume test, fake CUDA tensors
(FakeTensorMode) for the device audit, a CPU GradScaler for fp16, the ``aot_eager`` backend for compile.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.test_train_step import make_batch, params, same
from tests.train_helpers import assert_same_training_state, build_procedural
from training import checkpoint as ckpt
from training import distributed as D
from training.train import Trainer, unflatten_into_
from training.train import _flatten as flatten
from training.train import main as train_main
from training.train_config import load_config

FM = ["perceptual=fm"]  # feature matching: no VGG weights needed


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return build_procedural(tmp_path_factory.mktemp("procedural"), count=7, seed=2)


# ------------------------------------------------------------------------------------ 1. resume


def test_resume_reads_the_checkpoint_on_the_cpu_whatever_the_device(tmp_path):
    cpu = Trainer(load_config("tiny", FM))
    cpu.train_step(make_batch())
    path = ckpt.atomic_save(cpu.state_dict(), tmp_path / "latest.pt")
    saved_rng = ckpt.load(path)["torch_rng"]

    # 'meta' stands in for the GPU: read there, the RNG state cannot be set and Adam's step would move.
    torch.manual_seed(123)  # so that the restored state is visibly the checkpoint's
    dev = Trainer(load_config("tiny", FM), D.DistEnv(device=torch.device("meta")))
    assert not dev.g_opt.defaults["fused"]  # the plain Adam, whose step counters are host tensors
    dev.load_checkpoint(path)
    assert torch.equal(torch.get_rng_state(), saved_rng)
    assert dev.step == 1 and next(dev.gen.parameters()).device.type == "meta"
    for opt in (dev.g_opt, dev.d_opt):
        states = list(opt.state.values())
        assert states and all(st["step"].device.type == "cpu" for st in states)
        assert all(st["exp_avg"].device.type == "meta" for st in states)  # moments follow the weights


# -------------------------------------------------------------------------- 3. bf16 keeps heights fp32


def test_bf16_step_keeps_heights_and_what_d_reads_of_them_in_fp32():
    t = Trainer(load_config("tiny", [*FM, "amp=bf16", "r1_gamma=1", "r1_every=1"]))
    assert t.amp == torch.bfloat16
    seen: dict[str, list] = {"gen": [], "d_in": [], "d_conv": []}
    t.gen.register_forward_hook(lambda m, a, out: seen["gen"].append(out))
    t.disc.register_forward_pre_hook(lambda m, a: seen["d_in"].append(a[0].dtype))
    first_conv = t.disc.nets[0].convs[0]
    first_conv.register_forward_hook(lambda m, a, out: seen["d_conv"].append(out.dtype))
    s = t.train_step(make_batch())
    out = seen["gen"][0]
    assert out.height.dtype == out.height_flip.dtype == torch.float32
    assert out.rgb.dtype == out.rgb_flip.dtype == torch.float32
    # D's inputs (real + both routes, then the real batch again for R1) are fp32: the heights and their
    # finite differences reach D's first conv unrounded; that conv itself runs in bf16 (autocast is on).
    assert seen["d_in"] == [torch.float32, torch.float32]
    assert torch.bfloat16 in seen["d_conv"]
    assert s["skipped"] == 0.0 and s["r1"] > 0 and "d_fake_flip" in s


def test_the_generator_heads_are_fp32_under_autocast_and_keep_fine_height_steps():
    t = Trainer(load_config("tiny", [*FM, "amp=bf16"]))
    b = make_batch()
    z, noises = t.draw_latents(2, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        raw = t.gen.generator(b["onehot"], z, noises)
        h = t.gen.shadow(raw)["height"]
    assert raw.dtype == h.dtype == torch.float32
    # bf16 heights would take at most a few hundred levels between -1 and 1; these are not rounded
    assert h.unique().numel() > 1000


# ------------------------------------------------------------------------ 4. fp16 + GradScaler skips


def test_fp16_overflow_is_skipped_by_the_scaler_and_counted_apart():
    t = Trainer(load_config("tiny", FM))
    # fp16 autocast with a GradScaler, forced on the CPU (the trainer only picks fp16 on CUDA); the first
    # scale is so large that the scaled gradients overflow, as they do while a real scale settles.
    t.amp = torch.float16
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    g0, d0, e0 = params(t.gen), params(t.disc), params(t.ema)
    s = t.train_step(make_batch())
    assert s["skipped"] == 1.0 and math.isfinite(s["d_total"])  # finite loss
    assert same(g0, params(t.gen)) and same(d0, params(t.disc)) and same(e0, params(t.ema))
    assert t.scaler.get_scale() == 2.0**126  # halved
    assert (t.step, t.d_updates, t.g_updates, t.scaler_skips, t.bad_total) == (1, 0, 0, 1, 0)
    assert t.g_on is True  # a skipped step leaves the D:G switch as it was
    t.scaler.update(new_scale=1024.0)
    s = t.train_step(make_batch())
    assert s["skipped"] == 0.0 and t.scaler.get_scale() == 1024.0
    assert not same(g0, params(t.gen)) and not same(e0, params(t.ema))
    assert (t.step, t.d_updates, t.g_updates, t.scaler_skips) == (2, 1, 1, 1)
    state = t.state_dict()
    assert state["scaler_skips"] == 1 and state["scaler"]["scale"] == 1024.0


# ---------------------------------------------------------------------------------- 2. compile + R1


@pytest.mark.slow
def test_compiled_networks_train_with_r1_with_g_on_and_off():
    cfg = load_config("tiny", [*FM, "compile=true", "compile_backend=aot_eager", "r1_gamma=1", "r1_every=1"])
    t = Trainer(cfg)
    assert t.disc._compiled_call_impl is not None and t.gen.generator._compiled_call_impl is not None
    b = make_batch()
    d0 = params(t.disc)
    s1 = t.train_step(b)  # G on; the untrained D's loss (~4) switches G off
    g1 = params(t.gen)
    s2 = t.train_step(b)  # G off: D and R1 only
    assert (s1["g_on"], s2["g_on"]) == (1.0, 0.0)
    assert s1["r1"] > 0 and s2["r1"] > 0 and s1["skipped"] == s2["skipped"] == 0.0
    assert same(g1, params(t.gen)) and not same(d0, params(t.disc))
    assert (t.d_updates, t.g_updates) == (2, 1)


# --------------------------------------------------------------------- device audit with fake CUDA


def test_device_audit_g_d_and_losses_stay_on_the_device_with_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.func import functional_call

    from terrain_core.nn.discriminator import discriminator_input
    from training.losses import (
        discriminator_losses,
        feature_matching,
        generator_adv_losses,
        l1_loss,
        r1_penalty,
        split_batch,
    )
    from training.vgg import VGG19Features, perceptual_l1_pair

    t = Trainer(load_config("tiny", [*FM, "r1_gamma=1"]))
    vgg = VGG19Features()
    mode = FakeTensorMode(allow_non_fake_inputs=False)  # a real (CPU) tensor reaching an op raises
    # The fake tensors' device stands for the GPU. It is 'meta', not 'cuda': Tensor.__getitem__ enters a
    # device guard, which a CPU-only torch has not for CUDA. Either way a host tensor meeting a device
    # tensor (a constant made on the CPU, a mask drawn there) raises "found at least two devices".
    cuda = torch.device("meta")

    def fake(x: torch.Tensor) -> torch.Tensor:
        return FakeTensor(mode, x.detach().to("meta"), cuda).requires_grad_(x.requires_grad)

    def fake_state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: fake(v) for k, v in [*m.named_parameters(), *m.named_buffers()]}

    gs, ds, vs = fake_state(t.gen), fake_state(t.disc), fake_state(vgg)
    b = {k: fake(v) for k, v in make_batch().items() if k != "labels"}
    flips = fake(torch.tensor([True, False])), fake(torch.tensor([False, True]))
    n, _, h, w = b["onehot"].shape
    with mode:
        z = torch.rand((n, t.gen.generator.cfg.z_dim), device=cuda)
        noises = [
            torch.randn((n, 1, h // f, w // f), device=cuda) for f in t.gen.generator.cfg.block_scales()
        ]
        lr, ud = flips
        out = functional_call(t.gen, gs, (b["onehot"], z, noises, lr, ud))
        parts = [
            discriminator_input(b["onehot"], b["terrain"], b["height"]),
            discriminator_input(b["onehot"], out.rgb, out.height),
            discriminator_input(out.onehot_flip, out.rgb_flip, out.height_flip),
        ]
        real, fake_d, flip = split_batch(functional_call(t.disc, ds, (torch.cat(parts),)), 3)
        terms = discriminator_losses(real, fake_d, flip) | generator_adv_losses(fake_d, flip)
        terms["fm"] = feature_matching(fake_d, real)
        terms["l1"] = l1_loss(out.rgb, b["terrain"], out.height, b["height"])
        vgg_fake = lambda x: functional_call(vgg, vs, (x,))  # noqa: E731
        terms["perc_rgb"], terms["perc_h"] = perceptual_l1_pair(
            vgg_fake, (out.rgb, b["terrain"]), (out.height, b["height"])
        )
        x = parts[0].detach().requires_grad_(True)
        terms["r1"] = r1_penalty([lg for lg, _ in functional_call(t.disc, ds, (x,))], x, first_channel=7)
        grads = torch.autograd.grad(terms["d_total"] + terms["r1"], list(ds.values())[: len(t.d_params)])
    checked = [out.rgb, out.height, out.texture_lab, out.rgb_flip, *terms.values(), *grads]
    assert all(x.device == cuda for x in checked)


# ------------------------------------------------------------------------------ host syncs per step

# Ops that make the host wait for the device: reading a value (item, bool, float, if tensor), ops whose
# output size depends on values, and tensors made from host data (each a copy to the device).
SYNC_OPS = ("_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "equal", "lift_fresh")


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name.startswith(SYNC_OPS):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def count_syncs(trainer: Trainer, batch, monkeypatch) -> list[str]:
    """The sync ops of one step; ``Tensor.tolist`` (which the dispatcher does not see) counted too."""
    calls: list[str] = []
    tolist = torch.Tensor.tolist

    def spy(self):
        calls.append("tolist")
        return tolist(self)

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "tolist", spy)
        with SyncCounter() as c:
            trainer.train_step(batch)
    return c.ops + calls


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "r1_gamma=1",
            "r1_every=1",
            "l1_weight=1",
            "slope_stats_weight=1",
            "detail_stats_weight=1",
            "diversity_weight=1",
        ],
    ],
)
def test_one_host_sync_per_step(extra, monkeypatch):
    t = Trainer(load_config("tiny", [*FM, *extra]))
    b = make_batch()
    t.train_step(b)  # first step: G on; the next with G off
    assert count_syncs(t, b, monkeypatch) == ["tolist"]  # losses and grad norms read back together
    t.g_on = True
    assert count_syncs(t, b, monkeypatch) == ["tolist"]


# ------------------------------------------------------------------------- several processes, layout


def test_reduced_gradients_keep_their_memory_layout():
    grads = [torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last), torch.randn(7)]
    want = [g.clone() * 2 for g in grads]
    flat = torch.cat([flatten(grads), torch.tensor([1.5, 2.5])]) * 2  # as after an all_reduce
    rest = unflatten_into_(flat, grads)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(a, b) for a, b in zip(grads, want, strict=True))
    assert rest.tolist() == [3.0, 5.0]


# -------------------------------------------------------------------- wall-clock stop and GPU preset


def test_max_minutes_stops_saves_and_says_so(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ["--config", "tiny", "--data", str(tiny_data), "--out", str(run), "--set", "sample_count=0"]
    args += ["--set", "split=", "--set", "workers=0"]
    args += ["--set", "export=false", "--max-steps", "50", "--max-minutes", "0.0001"]
    assert train_main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["stopped"] == "max_minutes (0.0001)"
    assert ckpt.load(run / "latest.pt")["step"] == 1  # saved at the stop, though save_every is 2


def test_gpu_preset_resolves_to_gpu_sized_settings():
    cfg = load_config("gpu")
    assert cfg.workers == -1 and not cfg.export_onnx and not cfg.vgg_download
    assert cfg.max_minutes > 0 and cfg.save_every <= 500 and cfg.batch_size >= 32
    assert cfg.amp == "auto" and cfg.crop % cfg.generator_config().downsample == 0


# ---------------------------------------------------------------------------- VGG without a network


def test_vgg_download_gives_up_fast_on_a_silent_server(monkeypatch, tmp_path):
    from training import vgg

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never answers: a black-holed proxy
    stop = threading.Event()
    threading.Thread(target=lambda: (server.accept(), stop.wait(10)), daemon=True).start()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(vgg, "VGG19_URL", f"http://127.0.0.1:{server.getsockname()[1]}/vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(vgg, "DOWNLOAD_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    net, why = vgg.load_vgg19(None, allow_download=True)
    assert net is None and "could not download" in why and "timed out" in why
    assert time.monotonic() - t0 < 5
    assert not list(tmp_path.rglob("*.pth*"))  # no partial file left in the cache
    stop.set()
    server.close()


def test_vgg_download_refused_falls_back_at_once(monkeypatch, tmp_path):
    from training import vgg

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(vgg, "VGG19_URL", f"http://127.0.0.1:{port}/vgg19-dcbb9e9d.pth")
    t0 = time.monotonic()
    net, why = vgg.load_vgg19(None, allow_download=True)
    assert net is None and "could not download" in why and time.monotonic() - t0 < 2


# ------------------------------------------------- several processes: bf16, R1, stop and resume


def _torchrun(data: Path, run: Path, steps: int, *extra: str) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.train", "--config", "tiny", "--data", str(data), "--out", str(run),
        "--device", "cpu", "--max-steps", str(steps), "--set", "export=false", "--set", "sample_count=0",
        "--set", "batch_size=1", "--set", "amp=bf16", "--set", "r1_gamma=1", "--set", "r1_every=2",
        "--set", "perceptual=fm", "--set", "split=", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_bf16_r1_stopped_and_resumed_match_an_uninterrupted_run(tiny_data, tmp_path):
    # 7 maps, 2 processes x batch 1: 3 steps per epoch, one map left out of every epoch (uneven data).
    # Stop mid-epoch at step 4, resume to 7; R1 runs on steps 0, 2, 4, 6.
    a, b = tmp_path / "a", tmp_path / "b"
    _torchrun(tiny_data, a, 7, "--set", "workers=1")  # one persistent worker per process, three epochs
    _torchrun(tiny_data, b, 4, "--set", "workers=0")
    assert ckpt.load(b / "latest.pt")["step"] == 4
    _torchrun(tiny_data, b, 7, "--set", "workers=0", "--resume")
    sa, sb = ckpt.load(a / "latest.pt"), ckpt.load(b / "latest.pt")
    assert sa["step"] == sb["step"] == 7 and sa["world"] == sb["world"] == 2
    assert_same_training_state(sa, sb)
    assert (sa["g_updates"], sa["decisions_hex"]) == (sb["g_updates"], sb["decisions_hex"])
    summary = json.loads((b / "summary.json").read_text())
    assert summary["ranks_agree"] and summary["bad_steps"] == 0
    rows = {r["step"]: r for r in map(json.loads, (a / "stats.jsonl").read_text().splitlines())}
    assert [s for s in rows if "r1" in rows[s]] == [1, 3, 5, 7]  # R1 on steps 0, 2, 4, 6 (logged after)
