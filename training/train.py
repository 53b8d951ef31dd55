"""Train the terrain GAN: ``python -m training.train --config PRESET_OR_FILE --data DIR --out RUN_DIR``.

One training step is the original's (TerrGen1.1.py ``train_step``), with every part switchable in the
config (training/train_config.py):

1. G makes texture + height from the segmentation, z and noise; the shadow generator shades it (route 1).
   Route 2 flips texture, height and segmentation together per sample, left-right and/or up-down, and
   shades them again: the same texture lit from another side, so shading leaking into the texture shows.
2. One D forward judges real, route 1 and route 2 (one batch). Hinge losses over both routes.
3. As in the original, D's and G's gradients both come from that one forward (a simultaneous update):
   G is judged by the D of this step, before D's own update. G's loss adds 0.001 x VGG19 perceptual L1
   on terrain RGB and height (or D feature matching when no VGG weights are available).
4. Gradients (and the loss values) are averaged over processes in one all_reduce; D always steps; G
   steps only while the dynamic D:G switch has it on (off at D loss >= 2.0, on again below 1.5).
5. EMA of G + shadow after each G update; NaN/inf steps are skipped and counted.

Every random draw of a step (z, noise maps, flips) comes from generators seeded by (seed, step, rank), and
the data order and crops by (seed, epoch, index), so a resumed run repeats exactly the steps an
uninterrupted one would have taken, with no RNG state to carry beyond the step counter.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from training import checkpoint as ckpt
from training import distributed as D
from training.losses import (
    DOutput,
    detail_stats_loss,
    discriminator_losses,
    diversity_loss,
    feature_matching,
    generator_adv_losses,
    l1_loss,
    r1_penalty,
    slope_stats_loss,
    split_batch,
    update_g_enabled,
    weighted_total,
)
from training.manifest import manifest_or_empty, split_names
from training.nets import TrainGenerator, draw_flips, warm_start
from training.resume_state import ResumeStateError, load_resume_state, save_resume_state
from training.train_config import ConfigError, TrainConfig, config_to_toml, load_config, preset_names
from training.vgg import load_vgg19, perceptual_l1_pair

RESUME_STATE = "resume_state.safetensors"  # the compact state, beside latest.pt in the run folder


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with NaN/inf losses or gradients."""


class UsageError(RuntimeError):
    """The command line or the run folder is not usable; the message says what to do."""


# ------------------------------------------------------------------------------------------------ helpers


def step_seed(seed: int, step: int, rank: int, stream: int) -> int:
    """A 63-bit seed for one random stream of one step on one rank."""
    s = np.random.SeedSequence([seed & 0xFFFFFFFF, step, rank, stream]).generate_state(2, np.uint32)
    return (int(s[0]) << 31 | int(s[1]) >> 1) & (2**63 - 1)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rates at ``step`` (warm-up, then constant/cosine/linear decay)."""
    if cfg.lr_warmup_steps and step < cfg.lr_warmup_steps:
        return (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "constant" or total <= cfg.lr_warmup_steps:
        return 1.0
    t = min(1.0, (step - cfg.lr_warmup_steps) / max(1, total - cfg.lr_warmup_steps))
    lo = cfg.lr_final_fraction
    if cfg.lr_schedule == "cosine":
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0 - (1.0 - lo) * t


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU has it, fp16 on older GPUs, none on CPU unless asked."""
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp = 'fp16' needs a CUDA device; use 'bf16' or 'off' on CPU")
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1).float() for t in tensors]) if tensors else torch.zeros(0)


def unflatten_into_(flat: torch.Tensor, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Copy ``flat`` (as :func:`_flatten` laid it out) back into ``tensors``; return what follows them.

    In place, so each tensor keeps its strides: a channels_last gradient stays channels_last (a view of
    the flat buffer would be NCHW-contiguous, and the fused optimiser kernels fall back to slow paths).
    """
    offset = 0
    for t in tensors:
        k = t.numel()
        t.copy_(flat[offset : offset + k].view(t.shape))
        offset += k
    return flat[offset:]


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``opt.load_state_dict(saved)``, keeping ``opt``'s own implementation flags.

    A saved param group carries ``fused``/``foreach``/``capturable``, and torch would adopt them: a CPU
    checkpoint would switch a GPU run's fused Adam off (or on where the device has none). They also decide
    where the step counters go: to the parameters' device for fused Adam, left on the CPU otherwise.
    """
    flags = ("fused", "foreach", "capturable")
    groups = [
        {**g, **{k: own[k] for k in flags if k in own}}
        for g, own in zip(saved["param_groups"], opt.param_groups, strict=True)
    ]
    opt.load_state_dict({**saved, "param_groups": groups})


def configure_cuda_backends() -> None:
    """cuDNN autotuning (fixed crop sizes) and TF32 matmuls/convs: the usual GPU training settings."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# ------------------------------------------------------------------------------------------------ trainer


class Judged(NamedTuple):
    """What one step's G and D forward produced (see ``Trainer._generate_and_judge``)."""

    out: Any  # the generator's outputs: route 1 (rgb, height, texture_lab) and route 2 (*_flip)
    real_input: torch.Tensor  # D's input for the real maps [N, 13, H, W] (discriminator_input)
    d_real: DOutput  # D on the real maps: per scale (logits, features)
    d_fake: DOutput  # D on route 1
    d_flip: DOutput | None  # D on route 2 (None without flip_route)


class Trainer:
    """Networks, optimisers and the switch state; ``train_step(batch)`` runs one step of the original."""

    def __init__(self, cfg: TrainConfig, env: D.DistEnv | None = None, *, total_steps: int = 0, log=print):
        self.cfg = cfg
        self.env = env or D.DistEnv()
        self.device = self.env.device
        self.log = log if self.env.is_main else _quiet
        self.total_steps = total_steps
        if self.device.type == "cuda":
            configure_cuda_backends()
        self._build_networks()
        self._build_optimisers()
        self.amp = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.vgg, self.perceptual_source = None, "off"
        self.fm_weight = cfg.fm_weight
        self._setup_perceptual()
        self._check_perceptual_agrees()

        # Switch and bookkeeping state (all in the checkpoint).
        self.step = 0  # batches consumed (skipped steps included)
        self.g_on = True
        self.d_updates = 0
        self.g_updates = 0
        self.bad_in_a_row = 0
        self.bad_total = 0
        self.scaler_skips = 0  # fp16 steps the GradScaler skipped (inf/NaN gradients; it halves its scale)
        self.decisions_hex = ""  # hash chain of G on/off per step: equal digests = equal decisions
        self.campaign: list[dict[str, Any]] = []  # earlier runs continued from a resume state

    # -- set-up -------------------------------------------------------------------------------------------

    def _build_networks(self) -> None:
        """G + shadow, D and the EMA copy of G, with the same initial weights on every process, in
        channels_last on a GPU, compiled when the config asks."""
        from terrain_core.nn.discriminator import MultiScaleDiscriminator

        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial weights everywhere (rank 0's are broadcast anyway)
        self.gen = TrainGenerator(cfg.generator_config(), cfg.shadow_config()).to(self.device)
        self.gen.generator.check_values = False  # its inputs are drawn here; a check is a sync on a GPU
        self.disc = MultiScaleDiscriminator(cfg.discriminator_config()).to(self.device)
        self.channels_last = cfg.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.gen.to(memory_format=torch.channels_last)
            self.disc.to(memory_format=torch.channels_last)
        D.broadcast_module_(self.gen, self.env)
        D.broadcast_module_(self.disc, self.env)
        self.ema = copy.deepcopy(self.gen).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        if self.ema is not None:
            self.ema_params = list(self.ema.parameters())
            self.ema_buffers = list(self.ema.buffers())
        if cfg.compile:
            # In place (Module.compile): state-dict keys stay as they are; the EMA copy is made above.
            # R1 does not go through the compiled D (see r1_disc).
            self.gen.generator.compile(backend=cfg.compile_backend)
            self.disc.compile(backend=cfg.compile_backend)

    def _build_optimisers(self) -> None:
        cfg = self.cfg
        self.g_params = [p for p in self.gen.parameters() if p.requires_grad]
        self.d_params = [p for p in self.disc.parameters() if p.requires_grad]
        # Fused Adam (one kernel, step counters on the device): no per-parameter host reads of the step.
        fused = self.device.type in ("cuda", "cpu")
        self.g_opt = torch.optim.Adam(
            self.g_params, lr=cfg.g_lr, betas=(cfg.g_beta1, cfg.g_beta2), eps=cfg.adam_eps, fused=fused
        )
        self.d_opt = torch.optim.Adam(
            self.d_params, lr=cfg.d_lr, betas=(cfg.d_beta1, cfg.d_beta2), eps=cfg.adam_eps, fused=fused
        )

    def _setup_perceptual(self) -> None:
        cfg = self.cfg
        if cfg.perceptual == "off" or cfg.perceptual_weight == 0:
            return
        if cfg.perceptual == "fm":
            self.fm_weight += cfg.fm_fallback_weight
            self.perceptual_source = "feature matching"
            return
        net, where, error = None, "", None
        # With several processes and a possible download, rank 0 fetches into the cache first and the
        # others read it after a barrier; rank 0 reaches the barrier even when loading fails.
        sync = self.env.distributed and cfg.vgg_download and not cfg.vgg_weights
        if not sync or self.env.is_main:
            try:
                net, where = load_vgg19(
                    cfg.vgg_weights or None, allow_download=cfg.vgg_download, progress=self.env.is_main
                )
            except Exception as e:  # noqa: BLE001 - re-raised below, after the barrier
                error = e
        if sync:
            D.barrier(self.env)
            if not self.env.is_main:
                net, where = load_vgg19(None, allow_download=False)
        if error is not None:
            raise error
        if net is None:
            self.fm_weight += cfg.fm_fallback_weight
            self.perceptual_source = "feature matching (no VGG19 weights)"
            self.log(
                f"note: {where}. Training continues with discriminator feature matching (weight "
                f"{cfg.fm_fallback_weight}) in place of the VGG19 perceptual loss; put the standard weights "
                "there or set vgg_weights to a local copy to use VGG19."
            )
            return
        self.vgg = net.to(self.device)
        self.perceptual_source = f"vgg19 ({where})"

    def _check_perceptual_agrees(self) -> None:
        """Every rank must compute the same loss terms, or the shared all_reduce buffer would differ."""
        if not self.env.distributed:
            return
        kinds = D.all_gather_objects(self.perceptual_source.split(" (")[0], self.env)
        if len(set(kinds)) > 1:
            raise RuntimeError(
                f"processes disagree on the perceptual loss ({kinds}): some found VGG19 weights and "
                "others did not; give every node the same vgg_weights file"
            )

    # -- one step -----------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        if self.channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def draw_latents(
        self, n: int, h: int, w: int, stream: int = 1
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """z ~ U[0, 1) [n, z_dim] and one N(0, 1) map per residual block, seeded by (seed, step, rank);
        ``stream`` 3 draws the second seed of the diversity term."""
        gcfg = self.gen.generator.cfg
        g = torch.Generator(device=self.device)
        g.manual_seed(step_seed(self.cfg.seed, self.step, self.env.rank, stream))
        z = torch.rand((n, gcfg.z_dim), generator=g, device=self.device)
        noises = [
            torch.randn((n, 1, h // f, w // f), generator=g, device=self.device) for f in gcfg.block_scales()
        ]
        return z, noises

    def draw_flips(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample flip masks [n] bool, drawn on the device (a host-drawn mask is a copy per step)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(step_seed(self.cfg.seed, self.step, self.env.rank, 2))
        return draw_flips(n, g, self.cfg.flip_no_identity)

    def _set_lrs(self) -> float:
        f = lr_factor(self.step, self.total_steps, self.cfg)
        for group in self.g_opt.param_groups:
            group["lr"] = self.cfg.g_lr * f
        for group in self.d_opt.param_groups:
            group["lr"] = self.cfg.d_lr * f
        return f

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One batch: D step always, G step while the switch is on. Returns the all-process mean stats.

        The phases in order: G's two routes and one D pass (``_generate_and_judge``), D's hinge losses
        (``_d_phase``), G's loss terms while G is on (``_g_phase``), lazy R1 (``_r1_phase``); then both
        networks' gradients from that one forward, one all_reduce, unscale + clip + one read-back, and the
        updates (optimisers, EMA, switch, bad-step counters).
        """
        cfg = self.cfg
        onehot, real_rgb, real_h = self._inputs(batch)
        g_on = self.g_on
        lr_f = self._set_lrs()
        with self._autocast():
            judged = self._generate_and_judge(onehot, real_rgb, real_h, g_on)
            terms = self._d_phase(judged)
            if g_on:
                terms.update(self._g_phase(judged, onehot, real_rgb, real_h))
        d_obj = terms["d_total"]
        r1 = self._r1_phase(judged.real_input, map_channels=onehot.shape[1])
        if r1 is not None:
            terms["r1"] = r1
            d_obj = d_obj + r1 * (0.5 * cfg.r1_gamma * cfg.r1_every)

        params, grads = self._gradients(d_obj, terms.get("g_total"), g_on)
        names, values = self._average_over_processes(params, grads, terms)
        losses, d_norm, g_norm = self._unscale_clip_read(names, values, g_on)
        applied = self._apply_updates(losses, d_norm, g_norm, g_on)

        self.d_opt.zero_grad(set_to_none=True)
        self.g_opt.zero_grad(set_to_none=True)
        self.decisions_hex = hashlib.sha256(f"{self.decisions_hex}{int(g_on)}".encode()).hexdigest()
        self.step += 1
        self._stop_if_diverged(losses)
        return {
            **losses,
            "g_on": float(g_on),
            "lr_factor": lr_f,
            "d_grad_norm": d_norm,
            "g_grad_norm": g_norm,
            "skipped": float(not applied),
        }

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch on the device: one-hot map [N, 7, H, W], terrain RGB [N, 3, H, W] and height
        [N, 1, H, W], both -1..1."""
        onehot = self._to_device(batch["onehot"]).float()
        real_rgb = self._to_device(batch["terrain"]).float()
        real_h = self._to_device(batch["height"]).float()
        return onehot, real_rgb, real_h

    def _generate_and_judge(
        self, onehot: torch.Tensor, real_rgb: torch.Tensor, real_h: torch.Tensor, g_on: bool
    ) -> Judged:
        """G's routes 1 and 2 (with gradients while G is on), then one D forward over real + fakes."""
        from terrain_core.nn.discriminator import discriminator_input

        n, _, h, w = onehot.shape
        z, noises = self.draw_latents(n, h, w)
        flip_lr, flip_ud = self.draw_flips(n) if self.cfg.flip_route else (None, None)
        with torch.set_grad_enabled(g_on):
            out = self.gen(onehot, z, noises, flip_lr, flip_ud)  # routes 1 and 2
        parts = [
            discriminator_input(onehot, real_rgb, real_h),
            discriminator_input(onehot, out.rgb, out.height),
        ]
        if self.cfg.flip_route:
            parts.append(discriminator_input(out.onehot_flip, out.rgb_flip, out.height_flip))
        d_split = split_batch(self.disc(torch.cat(parts, 0)), len(parts))  # one batch: real + fakes
        d_flip = d_split[2] if self.cfg.flip_route else None
        return Judged(out, parts[0], d_split[0], d_split[1], d_flip)

    @staticmethod
    def _d_phase(judged: Judged) -> dict[str, torch.Tensor]:
        """D's hinge losses over both routes (d_real, d_fake, d_fake_flip, d_total)."""
        return discriminator_losses(judged.d_real, judged.d_fake, judged.d_flip)

    def _g_phase(
        self, judged: Judged, onehot: torch.Tensor, real_rgb: torch.Tensor, real_h: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """G's loss terms and their weighted sum ``g_total``: the hinge on both routes (judged by this
        step's D), VGG19 perceptual L1 and/or D feature matching, and the optional L1, slope and detail
        statistics and diversity terms."""
        cfg, out = self.cfg, judged.out
        terms = generator_adv_losses(judged.d_fake, judged.d_flip)
        weights = {"g_adv": 1.0, "g_adv_flip": 1.0}
        if self.vgg is not None:  # RGB and height through one VGG batch
            pair = perceptual_l1_pair(self.vgg, (out.rgb, real_rgb), (out.height, real_h))
            terms["perc_rgb"], terms["perc_h"] = pair
            weights["perc_rgb"] = weights["perc_h"] = cfg.perceptual_weight
        if self.fm_weight:
            terms["fm"] = feature_matching(judged.d_fake, judged.d_real)
            weights["fm"] = self.fm_weight
        if cfg.l1_weight:
            terms["l1"] = l1_loss(out.rgb, real_rgb, out.height, real_h)
            weights["l1"] = cfg.l1_weight
        if cfg.slope_stats_weight:
            terms["slope_stats"] = slope_stats_loss(out.height, real_h, onehot)
            weights["slope_stats"] = cfg.slope_stats_weight
        if cfg.detail_stats_weight:
            terms["detail_stats"] = detail_stats_loss(out.rgb, real_rgb, onehot)
            weights["detail_stats"] = cfg.detail_stats_weight
        if cfg.diversity_weight:
            terms["diversity"] = self._diversity_term(out, onehot)
            weights["diversity"] = cfg.diversity_weight
        terms["g_total"] = weighted_total(terms, weights)
        return terms

    def _diversity_term(self, out, onehot: torch.Tensor) -> torch.Tensor:
        """Mode seeking: the first k maps again with another seed (z and noise), no D pass; their detail
        should differ from route 1's."""
        cfg = self.cfg
        n, _, h, w = onehot.shape
        k = min(n, cfg.diversity_samples)
        z2, noises2 = self.draw_latents(k, h, w, stream=3)
        out2 = self.gen(onehot[:k], z2, noises2)
        return diversity_loss(
            (out.height[:k], out.texture_lab[:k]),
            (out2.height, out2.texture_lab),
            cfg.diversity_cap,
            mask=1.0 - onehot[:k, :1] if cfg.diversity_land_only else None,  # channel 0: water
        )

    def _r1_phase(self, real_input: torch.Tensor, map_channels: int) -> torch.Tensor | None:
        """Lazy R1 (StyleGAN2) on D's real input: every r1_every steps (None otherwise, and when off), a
        separate fp32 pass, the penalty on the image channels only (those after the map's)."""
        cfg = self.cfg
        if not (cfg.r1_gamma and self.step % cfg.r1_every == 0):
            return None
        x = real_input.detach().float().requires_grad_(True)
        logits = [lg for lg, _ in self.r1_disc(x)]
        return r1_penalty(logits, x, first_channel=map_channels)

    def _gradients(
        self, d_obj: torch.Tensor, g_obj: torch.Tensor | None, g_on: bool
    ) -> tuple[list[torch.nn.Parameter], list[torch.Tensor]]:
        """Gradients of both networks from the same forward (the original's simultaneous update),
        loss-scaled under fp16, zeros for unused parameters: (parameters, gradients), D's then G's (while
        G is on)."""
        scale = self.scaler.scale if self.scaler.is_enabled() else (lambda t: t)
        d_grads = torch.autograd.grad(scale(d_obj), self.d_params, retain_graph=g_on, allow_unused=True)
        g_grads: tuple = ()
        if g_on:
            g_grads = torch.autograd.grad(scale(g_obj), self.g_params, allow_unused=True)
        params = self.d_params + (self.g_params if g_on else [])
        grads = [
            torch.zeros_like(p) if g is None else g for p, g in zip(params, d_grads + g_grads, strict=True)
        ]
        return params, grads

    def _average_over_processes(
        self, params: list[torch.nn.Parameter], grads: list[torch.Tensor], terms: dict[str, torch.Tensor]
    ) -> tuple[list[str], torch.Tensor]:
        """One all_reduce: the gradients, then the loss values (identical key order on every rank, since
        every rank has the same config and the same g_on); the gradients then become ``params``' .grad.
        Returns the loss names (sorted) and their values [len(names)], still on the device."""
        names = sorted(terms)
        values = torch.stack([terms[k].detach().float() for k in names])
        if self.env.distributed:
            flat = torch.cat([_flatten(grads), values])
            D.all_mean_(flat, self.env)
            values = unflatten_into_(flat, grads)  # in place, keeping each gradient's memory layout
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr
        return names, values

    def _unscale_clip_read(
        self, names: list[str], values: torch.Tensor, g_on: bool
    ) -> tuple[dict[str, float], float, float]:
        """Unscale (fp16), clip, then read the losses and both norms back in one device-to-host copy: the
        step's only sync (none is needed before it, since a skipped step's gradients are dropped).
        Returns (losses, D's gradient norm, G's: 0 while G is off)."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.d_opt)
            if g_on:
                self.scaler.unscale_(self.g_opt)
        d_norm_t = self._clip(self.d_params, self.cfg.d_clip)
        g_norm_t = self._clip(self.g_params, self.cfg.g_clip) if g_on else torch.zeros_like(d_norm_t)
        host = torch.cat([values, d_norm_t.reshape(1), g_norm_t.reshape(1)]).tolist()
        return dict(zip(names, host[: len(names)], strict=True)), host[-2], host[-1]

    def _apply_updates(self, losses: dict[str, float], d_norm: float, g_norm: float, g_on: bool) -> bool:
        """The optimiser steps of a finite step, then the EMA, the D:G switch and the bad-step counters.
        Returns whether the step was applied."""
        losses_finite = all(math.isfinite(v) for v in losses.values())
        grads_finite = math.isfinite(d_norm) and math.isfinite(g_norm)
        applied = losses_finite and grads_finite
        if self.scaler.is_enabled():
            # The scaler finds the same inf/NaN gradients (after unscale_), skips both optimisers' steps
            # and halves its scale; otherwise it steps. Such a step updates nothing, as a bad step, but is
            # counted apart: overflows while the scale settles are expected, not a sign of divergence.
            if losses_finite:
                self.scaler.step(self.d_opt)
                if g_on:
                    self.scaler.step(self.g_opt)
                if not grads_finite:
                    self.scaler_skips += 1
            self.scaler.update()  # also after a bad step: unscale_ needs an update before the next one
        elif applied:
            self.d_opt.step()
            if g_on:
                self.g_opt.step()
        if applied:
            self.d_updates += 1
            if g_on:
                self.g_updates += 1
                self._update_ema()
            self.bad_in_a_row = 0
            if self.cfg.dynamic_ratio:
                self.g_on = update_g_enabled(
                    g_on, losses["d_total"], self.cfg.d_loss_upper, self.cfg.d_loss_lower
                )
        elif not (losses_finite and self.scaler.is_enabled()):
            self.bad_in_a_row += 1
            self.bad_total += 1
        return applied

    def _stop_if_diverged(self, losses: dict[str, float]) -> None:
        if self.bad_in_a_row >= self.cfg.max_bad_steps:
            bad = sorted(k for k, v in losses.items() if not math.isfinite(v)) or ["gradients"]
            raise TrainingDiverged(
                f"{self.bad_in_a_row} consecutive steps (up to step {self.step}) had NaN/inf values "
                f"({', '.join(bad)}); each was skipped, and training stops here. The last checkpoint "
                "(latest.pt) holds the state before them. Try lower learning rates (--set g_lr=... "
                "--set d_lr=...), --set amp=off, R1 (--set r1_gamma=1), or check the data for broken maps."
            )

    def r1_disc(self, x: torch.Tensor):
        """D for R1: R1 differentiates D's gradient (a double backward), which a compiled module
        (aot_autograd) does not support, so with ``compile`` it runs D's eager forward, same weights."""
        return self.disc.forward(x) if self.cfg.compile else self.disc(x)

    @staticmethod
    def _clip(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """The global gradient norm (a 0-dim tensor: reading it is left to the caller), clipped at
        ``max_norm`` when that is > 0."""
        if max_norm > 0:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.cfg.ema_decay
        if self.cfg.ema_warmup:
            decay = min(decay, (1 + self.g_updates) / (10 + self.g_updates))
        torch._foreach_lerp_(self.ema_params, [p.detach() for p in self.gen.parameters()], 1.0 - decay)
        gen_buffers = list(self.gen.buffers())
        if gen_buffers:
            torch._foreach_copy_(self.ema_buffers, gen_buffers)

    # -- state --------------------------------------------------------------------------------------------

    def export_net(self) -> TrainGenerator:
        """What inference should use: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.gen

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "world": self.env.world,
            "g": self.gen.state_dict(),
            "d": self.disc.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "g_opt": self.g_opt.state_dict(),
            "d_opt": self.d_opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "g_on": self.g_on,
            "d_updates": self.d_updates,
            "g_updates": self.g_updates,
            "bad_in_a_row": self.bad_in_a_row,
            "bad_total": self.bad_total,
            "scaler_skips": self.scaler_skips,
            "decisions_hex": self.decisions_hex,
            "perceptual": self.perceptual_source,  # what the run used, for an export made later
            "campaign": json.dumps(self.campaign),
            "torch_rng": torch.get_rng_state(),
            "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in (("g", self.gen), ("d", self.disc)):
            try:
                net.load_state_dict(state[key])
            except RuntimeError as e:
                raise ckpt.CheckpointError(
                    f"the checkpoint's {'generator' if key == 'g' else 'discriminator'} does not fit this "
                    f"config's model ({str(e).splitlines()[0]}); resume with the run's own config.toml"
                ) from None
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["g"])
        load_optimizer_state(self.g_opt, state["g_opt"])
        load_optimizer_state(self.d_opt, state["d_opt"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.g_on = bool(state["g_on"])
        self.d_updates, self.g_updates = int(state["d_updates"]), int(state["g_updates"])
        self.bad_in_a_row, self.bad_total = int(state["bad_in_a_row"]), int(state["bad_total"])
        self.scaler_skips = int(state.get("scaler_skips", 0))
        self.decisions_hex = state["decisions_hex"]
        self.campaign = json.loads(state.get("campaign", "[]"))
        torch.set_rng_state(state["torch_rng"].cpu())  # the CPU generator's state: a CPU ByteTensor

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Resume from a checkpoint file, read onto the CPU whatever this trainer's device.

        Read onto the GPU (``map_location=device``), the RNG state would land there (set_rng_state
        refuses it) and so would non-fused Adam's step counters (read back to the host every step).
        The optimisers move their moments to the parameters' device themselves.
        """
        state = ckpt.load(path, map_location="cpu")
        self.load_state_dict(state)
        return state


# ------------------------------------------------------------------------------------------------ data


class ResumableSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler (per-epoch permutation from seed + epoch) that can start mid-epoch.

    It yields ``(epoch, index)`` keys for :class:`EpochItems`.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.skip = 0

    def __iter__(self):
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.skip :]])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class EpochItems(torch.utils.data.Dataset):
    """``items[(epoch, i)]`` = item ``i`` of ``dataset`` with that epoch's crop.

    The epoch travels with each index, so the DataLoader's worker processes, each holding its own copy of
    the dataset, can live across epochs (``persistent_workers``) and still crop per (seed, epoch, index).
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return self.dataset[index]


def loader_workers(workers: int, local_processes: int) -> int:
    """The ``workers`` setting as a number of processes; -1 = CPU cores - 2 shared by this node's
    training processes, at least 1 each."""
    if workers >= 0:
        return workers
    return max(1, ((os.cpu_count() or 1) - 2) // max(local_processes, 1))


def open_dataset(root: str | Path, crop: int, seed: int, split: str):
    """The data engineer's TerrainDataset over the maps of ``split`` (all maps when it has none)."""
    from training.data.dataset import TerrainDataset

    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--data {root} is not a folder; build one with python -m training.build_dataset")
    names = split_names(root, split)
    return TerrainDataset(root, crop=crop, seed=seed, names=names)


# ------------------------------------------------------------------------------------------------ output


def drop_stats_after(path: Path, step: int) -> None:
    """On resume: forget logged rows past the checkpoint (those steps are about to run again)."""
    if not path.is_file():
        return
    keep = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


class StatsLog:
    """Means over a log window -> stats.jsonl (+ TensorBoard) and the progress line."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, log):
        self.path = run_dir / "stats.jsonl"
        self.enabled = enabled
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.t0 = time.time()
        self.window_start = time.time()
        self.window_steps = 0
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard not installed: jsonl only
                log("note: TensorBoard is not installed; stats go to stats.jsonl only")

    def add(self, stats: dict[str, float]) -> None:
        self.window_steps += 1
        for k, v in stats.items():
            if math.isfinite(v):
                self.sums[k] = self.sums.get(k, 0.0) + v
                self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self, trainer: Trainer, epoch: int, images: int) -> dict[str, Any]:
        row: dict[str, Any] = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}
        g_steps = self.sums.get("g_on", 0.0)
        dt = time.time() - self.window_start
        row.update(
            step=trainer.step,
            epoch=epoch,
            time_s=round(time.time() - self.t0, 2),
            steps_per_s=self.window_steps / max(dt, 1e-9),
            images_per_s=images * self.window_steps / max(dt, 1e-9),
            # The D:G ratio over the window: D steps per G step (inf when G was off throughout).
            dg_ratio=self.window_steps / g_steps if g_steps else float("inf"),
            dg_ratio_total=trainer.d_updates / max(trainer.g_updates, 1),
            g_on_next=int(trainer.g_on),
            bad_steps_total=trainer.bad_total,
        )
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(
                    json.dumps(
                        {
                            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                            for k, v in row.items()
                        }
                    )
                    + "\n"
                )
            if self.tb is not None:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        self.tb.add_scalar(k, v, trainer.step)
        self.sums.clear()
        self.counts.clear()
        self.window_steps = 0
        self.window_start = time.time()
        return row

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def progress_line(row: dict[str, Any], total: int) -> str:
    def f(k: str) -> str:
        v = row.get(k)
        return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"

    ratio = row["dg_ratio"]
    r = f"{ratio:.1f}:1" if math.isfinite(ratio) else "inf (G off)"
    pct = 100.0 * row["step"] / max(total, 1)
    left = (total - row["step"]) / max(row["steps_per_s"], 1e-9)
    return (
        f"step {row['step']}/{total} ({pct:.0f}%) | D {f('d_total')} | G adv {f('g_adv')} "
        f"perc {f('perc_rgb')}/{f('perc_h')} fm {f('fm')} | D:G {r} | {row['steps_per_s']:.2f} it/s "
        f"| eta {left / 60:.1f} min"
    )


@torch.no_grad()
def write_samples(trainer: Trainer, fixed: dict[str, torch.Tensor], path: Path) -> Path:
    from terrain_core.noise import draw_inputs
    from training.data.files import save_png
    from training.samples import sample_grid

    net = trainer.export_net()
    gcfg = net.generator.cfg
    onehot = fixed["onehot"].to(trainer.device)
    n, _, h, w = onehot.shape
    tex, hgt, sh = [], [], []
    for i in range(n):  # seed i for map i: the same inputs at every sampling step
        inp = draw_inputs(gcfg, h, w, seed=i)
        z = torch.from_numpy(inp.z).to(trainer.device)
        noises = [torch.from_numpy(x).to(trainer.device) for x in inp.noises]
        t, hh, s = net.generate(onehot[i : i + 1], z, noises)
        tex.append(t), hgt.append(hh), sh.append(s)
    img = sample_grid(
        fixed["labels"].numpy().astype(np.uint8),
        torch.cat(tex).permute(0, 2, 3, 1).float().cpu().numpy(),
        torch.cat(sh).permute(0, 2, 3, 1).float().cpu().numpy(),
        torch.cat(hgt)[:, 0].float().cpu().numpy(),
        (fixed["terrain"].permute(0, 2, 3, 1).numpy() + 1.0) * 0.5,
    )
    return save_png(path, img)


def write_run_model(
    trainer: Trainer,
    run_dir: Path,
    data_dir: Path | None,
    preset: str,
    onnx: bool,
    log,
    train_cfg: TrainConfig | None = None,
) -> dict[str, Path]:
    """EMA G + shadow -> RUN_DIR/export/model.safetensors (+ model.onnx) via terrain_core.model_export.

    ``train_cfg``: the run's config for the provenance when the trainer was built with another (an
    export-only trainer without the perceptual network)."""
    from terrain_core.model_export import export_model

    man = manifest_or_empty(data_dir) if data_dir else {}
    provenance = {
        "preset": preset,
        "steps": trainer.step,
        "g_updates": trainer.g_updates,
        "d_updates": trainer.d_updates,
        "ema": trainer.ema is not None,
        "perceptual": trainer.perceptual_source,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": str(data_dir) if data_dir else "",
        "data_sources": man.get("sources", man.get("source", "")),
        "train_config": (train_cfg or trainer.cfg).to_dict(),
        # earlier runs this one continued (--resume-from), oldest first
        "campaign": [{k: v for k, v in r.items() if k != "config"} for r in trainer.campaign],
    }
    metadata: dict[str, Any] = {"name": f"{run_dir.name}-step{trainer.step}", "provenance": provenance}
    hr = man.get("height_range_m")
    if isinstance(hr, (list, tuple)) and len(hr) == 2:
        metadata["height_range_m"] = (float(hr[0]), float(hr[1]))
    net = trainer.export_net()
    st, ox = export_model(
        net,
        run_dir / "export" / "model",
        metadata=metadata,
        gen_config=trainer.cfg.generator_config(),
        shadow_config=trainer.cfg.shadow_config(),
        onnx=onnx,
    )
    paths = {"safetensors": st} | ({"onnx": ox} if ox else {})
    log(f"exported {', '.join(str(p) for p in paths.values())}")
    return paths


# ------------------------------------------------------------------------------------------------ the run


def train(
    cfg: TrainConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    preset: str = "",
    resume_from: str | Path | None = None,
    log=print,
) -> dict[str, Any]:
    """The training loop. Returns the run summary (also written to RUN_DIR/summary.json).

    ``resume_from``: a compact resume state (training.resume_state) to start this new run from."""
    env = D.init(device)
    try:
        return _train(cfg, Path(data_dir), Path(run_dir), env, resume, max_steps, preset, log, resume_from)
    finally:
        D.shutdown(env)


def out_of_time(step: int, t_begin: float, cfg: TrainConfig, env: D.DistEnv) -> bool:
    """Whether ``cfg.max_minutes`` have passed since ``t_begin``. With several processes every rank must
    stop at the same step: they decide together (one small all_reduce) every ``log_every`` steps."""
    late = time.time() - t_begin >= cfg.max_minutes * 60.0
    if not env.distributed:
        return late
    if step % cfg.log_every:
        return False
    return D.any_rank(late, env)


def _train(cfg, data_dir, run_dir, env, resume, max_steps, preset, log, resume_from=None) -> dict[str, Any]:
    t_begin = time.time()  # max_minutes counts from here: set-up (data, networks, compile) included
    log = log if env.is_main else _quiet
    if max_steps is not None:
        cfg = cfg.replace(max_steps=max_steps)
    ds = open_dataset(data_dir, cfg.crop, cfg.seed, cfg.split)  # before creating anything: bad data fails
    run_dir.mkdir(parents=True, exist_ok=True)
    sampler, per_epoch, total = plan_steps(ds, data_dir, cfg, env)
    trainer = Trainer(cfg, env, total_steps=total, log=log)
    start_state(trainer, run_dir, resume, resume_from, log)
    if env.is_main:
        (run_dir / "config.toml").write_text(config_to_toml(cfg))
    log(run_banner(trainer, len(ds), per_epoch, total))
    stats = StatsLog(run_dir, env.is_main, cfg.tensorboard, log)  # its clock includes data loading
    fixed = sample_maps(ds, data_dir, cfg) if env.is_main and cfg.sample_count else None
    loader = make_loader(ds, sampler, cfg, env)
    t_start = time.time()
    stopped = run_steps(trainer, loader, sampler, per_epoch, total, fixed, run_dir, t_begin, stats, log)
    summary = run_summary(trainer, stopped, t_start)
    if env.is_main:
        finish_run(trainer, summary, fixed, run_dir, data_dir, preset, log)
    log(
        f"done: {trainer.step} steps, D:G {summary['dg_ratio']:.2f}:1, {trainer.bad_total} skipped, "
        f"{summary['seconds']:.0f} s"
    )
    return summary


def _quiet(*args, **kwargs) -> None:
    """The log of processes other than rank 0."""


def plan_steps(ds, data_dir: Path, cfg: TrainConfig, env: D.DistEnv) -> tuple[ResumableSampler, int, int]:
    """This process's sampler, the steps per epoch and the steps of the run (epochs, capped by
    max_steps; max_steps alone when epochs is 0)."""
    if len(ds) < cfg.batch_size * env.world:
        raise UsageError(
            f"{data_dir} has {len(ds)} maps for split {cfg.split!r}; one step needs batch_size x processes "
            f"= {cfg.batch_size * env.world}: lower batch_size or add maps"
        )
    sampler = ResumableSampler(ds, env.world, env.rank, cfg.seed)
    per_epoch = len(sampler) // cfg.batch_size
    total = cfg.epochs * per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps) if cfg.epochs else cfg.max_steps
    return sampler, per_epoch, total


def start_state(trainer: Trainer, run_dir: Path, resume: bool, resume_from, log) -> None:
    """Where the run starts: RUN_DIR/latest.pt (``resume``), a compact resume state (``resume_from``),
    the config's warm start (``init_from``), or fresh weights."""
    cfg, env = trainer.cfg, trainer.env
    latest = ckpt.latest_path(run_dir)
    if resume:
        if not latest.is_file():
            raise UsageError(f"--resume: no checkpoint at {latest}; start without --resume")
        state = trainer.load_checkpoint(latest)
        if int(state.get("world", env.world)) != env.world:
            log(
                f"warning: the checkpoint was written by {state['world']} processes, now {env.world}: the "
                "data order after resume differs from an uninterrupted run"
            )
        log(f"resumed from {latest} at step {trainer.step}")
        if env.is_main:
            drop_stats_after(run_dir / "stats.jsonl", trainer.step)
    elif resume_from:
        try:
            rs = load_resume_state(trainer, resume_from)
        except ResumeStateError as e:
            raise UsageError(str(e)) from None
        trainer.campaign = rs["history"]
        done = sum(int(r.get("steps", 0)) for r in trainer.campaign)
        log(
            f"continuing from the resume state {resume_from}: {len(trainer.campaign)} earlier run(s), "
            f"{done} steps; G, D and EMA loaded, optimisers fresh"
        )
    elif cfg.init_from:
        try:
            ws = warm_start(trainer.gen, cfg.init_from, *([trainer.ema] if trainer.ema is not None else []))
        except ValueError as e:
            raise UsageError(str(e)) from None
        log(f"warm start from {cfg.init_from}: {ws.summary()}")


def run_banner(trainer: Trainer, maps: int, per_epoch: int, total: int) -> str:
    cfg, env = trainer.cfg, trainer.env
    return (
        f"model {cfg.model}: G+shadow {sum(p.numel() for p in trainer.g_params):,} parameters, "
        f"D {sum(p.numel() for p in trainer.d_params):,}; device {env.device}"
        f"{f' x {env.world} processes' if env.distributed else ''}; amp {trainer.amp}; "
        f"perceptual: {trainer.perceptual_source}; {maps} maps, {per_epoch} steps/epoch, {total} steps"
    )


def sample_maps(ds, data_dir: Path, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The maps the sample grids show: held-out maps when the data has a validation split (to see
    generalisation), else the first training maps."""
    sample_ds = ds
    if split_names(data_dir, "val"):
        sample_ds = open_dataset(data_dir, cfg.crop, cfg.seed, "val")
    items = [sample_ds[i] for i in range(min(cfg.sample_count, len(sample_ds)))]
    return {key: torch.stack([it[key] for it in items]) for key in ("onehot", "labels", "terrain")}


def make_loader(
    ds, sampler: ResumableSampler, cfg: TrainConfig, env: D.DistEnv
) -> torch.utils.data.DataLoader:
    """Made once: its workers live across epochs (the epoch travels with each index, see EpochItems)."""
    workers = loader_workers(cfg.workers, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loader_kw: dict[str, Any] = dict(
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        pin_memory=env.device.type == "cuda",
    )
    if workers:
        loader_kw.update(prefetch_factor=4, persistent_workers=True)
    return torch.utils.data.DataLoader(EpochItems(ds), **loader_kw)


def run_steps(
    trainer: Trainer,
    loader: torch.utils.data.DataLoader,
    sampler: ResumableSampler,
    per_epoch: int,
    total: int,
    fixed: dict[str, torch.Tensor] | None,
    run_dir: Path,
    t_begin: float,
    stats: StatsLog,
    log,
) -> str:
    """The loop: steps from the trainer's step to ``total``, with stats (closed at the end), progress,
    samples and checkpoints. Returns why it stopped early ("" when it did not)."""
    cfg, env = trainer.cfg, trainer.env
    is_tty = sys.stdout.isatty()
    stopped = ""
    epoch, offset = divmod(trainer.step, per_epoch)
    try:
        while trainer.step < total and not stopped:
            sampler.set_epoch(epoch)
            sampler.skip = offset * cfg.batch_size
            for batch in loader:
                stats.add(trainer.train_step(batch))
                s = trainer.step
                if cfg.max_minutes and s < total and out_of_time(s, t_begin, cfg, env):
                    stopped = f"max_minutes ({cfg.max_minutes:g})"
                    log(f"stopping at step {s}: {cfg.max_minutes:g} minutes of wall-clock time are up")
                if s % cfg.log_every == 0 or s == total:
                    line = progress_line(stats.flush(trainer, epoch, cfg.batch_size * env.world), total)
                    if env.is_main:
                        print(("\r" + line) if is_tty else line, end="" if is_tty else "\n", flush=True)
                if env.is_main:
                    save_after_step(trainer, fixed, run_dir, total, stopped)
                if s >= total or stopped:
                    break
            epoch += 1
            offset = 0
    finally:
        if is_tty and env.is_main:
            print()
        stats.close()
    return stopped


def save_after_step(
    trainer: Trainer, fixed: dict[str, torch.Tensor] | None, run_dir: Path, total: int, stopped: str
) -> None:
    """Rank 0 after a step: a sample grid, latest.pt + the resume state, a kept checkpoint, when due."""
    cfg, s = trainer.cfg, trainer.step
    if cfg.sample_every and s % cfg.sample_every == 0 and fixed is not None:
        write_samples(trainer, fixed, run_dir / "samples" / f"step_{s:07d}.png")
    save = s % cfg.save_every == 0 or s == total or bool(stopped)
    keep = bool(cfg.keep_every) and s % cfg.keep_every == 0
    state = trainer.state_dict() if save or keep else None  # one copy of G, D, EMA and the optimisers
    if save:
        ckpt.atomic_save(state, ckpt.latest_path(run_dir))
        save_resume_state(trainer, run_dir / RESUME_STATE, history=trainer.campaign)
    if keep:
        ckpt.atomic_save(state, run_dir / f"ckpt_{s:07d}.pt")


def run_summary(trainer: Trainer, stopped: str, t_start: float) -> dict[str, Any]:
    """The run's numbers; every rank reports what it holds (identical digests = identical weights and
    G decisions)."""
    env = trainer.env
    ranks = D.all_gather_objects(
        {
            "rank": env.rank,
            "params": D.param_digest(trainer.gen, trainer.disc),
            "decisions": trainer.decisions_hex,
        },
        env,
    )
    return {
        "steps": trainer.step,
        "d_updates": trainer.d_updates,
        "g_updates": trainer.g_updates,
        "dg_ratio": trainer.d_updates / max(trainer.g_updates, 1),
        "bad_steps": trainer.bad_total,
        "scaler_skips": trainer.scaler_skips,
        "world": env.world,
        "seconds": round(time.time() - t_start, 2),
        "stopped": stopped,
        "perceptual": trainer.perceptual_source,
        "ranks": ranks,
        "ranks_agree": len({(r["params"], r["decisions"]) for r in ranks}) == 1,
    }


def finish_run(
    trainer: Trainer,
    summary: dict[str, Any],
    fixed: dict[str, torch.Tensor] | None,
    run_dir: Path,
    data_dir: Path,
    preset: str,
    log,
) -> None:
    """Rank 0 at the end: the last sample grid, the model export, RUN_DIR/summary.json."""
    cfg = trainer.cfg
    if not summary["ranks_agree"]:
        log(f"warning: processes disagree at the end: {summary['ranks']}")
    if fixed is not None:
        write_samples(trainer, fixed, run_dir / "samples" / f"step_{trainer.step:07d}.png")
    if cfg.export:
        paths = write_run_model(trainer, run_dir, data_dir, preset or cfg.model, cfg.export_onnx, log)
        summary["export"] = {k: str(v) for k, v in paths.items()}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def export_only(
    cfg: TrainConfig | None,
    run_dir: Path,
    data_dir: Path | None,
    device: str | None,
    preset: str,
    checkpoint: Path | None = None,
    log=print,
) -> dict[str, Path]:
    """Export a checkpoint's EMA generator (RUN_DIR/latest.pt unless ``checkpoint`` names another)."""
    path = checkpoint or ckpt.latest_path(run_dir)
    state = ckpt.load(path)
    if cfg is None:
        from training.train_config import config_from_dict

        cfg = config_from_dict(state["config"])
    env = D.DistEnv(device=D.pick_device(device))
    trainer = Trainer(cfg.replace(perceptual="off"), env, log=log)  # the export needs no VGG19
    trainer.load_state_dict(state)
    trainer.perceptual_source = state.get("perceptual", "not recorded (an older checkpoint)")
    return write_run_model(trainer, run_dir, data_dir, preset or cfg.model, cfg.export_onnx, log, cfg)


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the terrain GAN (several GPUs: torchrun --nproc_per_node N -m training.train ...)",
    )
    p.add_argument(
        "--config",
        help=f"preset name ({', '.join(preset_names())}) or a TOML file; "
        "with --resume/--export-only defaults to RUN_DIR/config.toml",
    )
    p.add_argument("--data", help="dataset folder (NAME_t.png, NAME_h.png, NAME_i2.png)")
    p.add_argument("--out", required=True, help="run folder: config, stats, samples, checkpoints, export")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop after this much wall-clock time, set-up included (then saves and exports as at the end)",
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/latest.pt")
    p.add_argument(
        "--resume-from",
        metavar="FILE",
        help="start a new run from a compact resume state (RUN_DIR/resume_state.safetensors of an earlier "
        "run, or the committed training/resume/default-state.safetensors): G, D and EMA, fresh optimisers",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--export-only", action="store_true", help="export RUN_DIR/latest.pt and stop")
    p.add_argument(
        "--checkpoint", default=None, help="with --export-only: this checkpoint instead of latest.pt"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes as ``terrain_core.exits`` (2: bad arguments, config, data, checkpoint or --out, one
    line), plus 3 when training diverged."""
    from terrain_core.exits import run_entry

    args = build_parser().parse_args(argv)
    log = print if int(os.environ.get("RANK", "0")) == 0 else _quiet

    def body() -> int:
        try:
            return run_command(args, log)
        except TrainingDiverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 3

    return run_entry(
        body,
        expected=expected_errors(),
        interrupted="interrupted; resume with --resume (from the last latest.pt)",
    )


def expected_errors() -> tuple[type[Exception], ...]:
    """The errors ``main`` turns into exit 2 and one line: each says what to do."""
    from terrain_core.exits import UsageError as CommonUsageError
    from training.data.files import DataFileError
    from training.vgg import VGGWeightsError

    return (
        CommonUsageError,
        ConfigError,
        UsageError,
        ckpt.CheckpointError,
        D.DeviceError,
        DataFileError,
        ResumeStateError,
        VGGWeightsError,
    )


def run_command(args: argparse.Namespace, log) -> int:
    """The parsed command line -> a dry run, an export or a training run."""
    from terrain_core.output_set import check_output_dir

    run_dir = Path(args.out)
    check_output_dir(run_dir, "--out")  # before any work: a file there, or no permission
    if (args.resume or args.export_only) and not run_dir.is_dir():
        flag = "--resume" if args.resume else "--export-only"
        raise UsageError(f"{flag}: no checkpoint: there is no run folder at {run_dir}; check --out")
    cfg, config_src = resolve_config(args, run_dir)
    if cfg is not None:
        log(config_to_toml(cfg).rstrip())
    if args.dry_run:
        return 0
    # the preset or file named on the command line; a run folder's own config.toml names none (the
    # export then records the model preset)
    preset = Path(args.config).stem if args.config else ""
    if args.export_only:
        export_only(
            cfg,
            run_dir,
            Path(args.data) if args.data else None,
            args.device,
            preset,
            Path(args.checkpoint) if args.checkpoint else None,
            log,
        )
        return 0
    if not args.data:
        raise UsageError("--data is required to train")
    if args.resume and args.resume_from:
        raise UsageError("--resume and --resume-from exclude each other")
    train(
        cfg,
        args.data,
        run_dir,
        device=args.device,
        resume=args.resume,
        preset=preset,
        resume_from=args.resume_from,
        log=log,
    )
    return 0


def resolve_config(args: argparse.Namespace, run_dir: Path) -> tuple[TrainConfig | None, str]:
    """The config (--config, else the run folder's config.toml on --resume/--export-only, plus --set,
    --max-steps and --max-minutes) and where it came from ("" = none: --export-only reads the
    checkpoint's)."""
    config_src = args.config
    if not config_src and (args.resume or args.export_only) and (run_dir / "config.toml").is_file():
        config_src = str(run_dir / "config.toml")
    if not config_src and not args.export_only:
        raise UsageError("--config is required (a preset name or a TOML file)")
    if not config_src:
        return None, ""
    cfg = load_config(config_src, args.set)
    if args.max_steps is not None:
        cfg = cfg.replace(max_steps=args.max_steps)
    if args.max_minutes is not None:
        cfg = cfg.replace(max_minutes=args.max_minutes)
    return cfg, config_src


if __name__ == "__main__":
    sys.exit(main())
