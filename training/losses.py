"""GAN losses as pure functions returning named terms (SPADE-style loss dicts).

Discriminator outputs are what ``MultiScaleDiscriminator`` returns: a list over scales of
``(logits [N, 1, h, w], features [list of [N, C, h', w']])``. As in the original, each loss is a mean over
pixels, then a mean over scales; the D loss sums the two routes, so at an untrained D (logits ~ 0) it is
about 2 per route, 4 with the flipped route: the scale the dynamic-ratio thresholds 2.0 / 1.5 refer to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

DOutput = Sequence[tuple[torch.Tensor, Sequence[torch.Tensor]]]  # per scale: (logits, features)


def split_batch(outputs: DOutput, parts: int) -> list[list[tuple[torch.Tensor, list[torch.Tensor]]]]:
    """One D forward over ``cat([a, b, ...])`` -> per part, the per-scale (logits, features)."""
    out: list[list[tuple[torch.Tensor, list[torch.Tensor]]]] = [[] for _ in range(parts)]
    for logits, feats in outputs:
        lp = logits.chunk(parts, 0)
        fp = [f.chunk(parts, 0) for f in feats]
        for i in range(parts):
            out[i].append((lp[i], [f[i] for f in fp]))
    return out


def _logits(x: DOutput) -> list[torch.Tensor]:
    return [lg for lg, _ in x]


def hinge_real(real: DOutput) -> torch.Tensor:
    """mean over scales of mean(relu(1 - D(real)))."""
    return torch.stack([F.relu(1.0 - lg.float()).mean() for lg in _logits(real)]).mean()


def hinge_fake(fake: DOutput) -> torch.Tensor:
    """mean over scales of mean(relu(1 + D(fake)))."""
    return torch.stack([F.relu(1.0 + lg.float()).mean() for lg in _logits(fake)]).mean()


def generator_adv(fake: DOutput) -> torch.Tensor:
    """mean over scales of -mean(D(fake))."""
    return torch.stack([-lg.float().mean() for lg in _logits(fake)]).mean()


def discriminator_losses(
    real: DOutput, fake: DOutput, fake_flip: DOutput | None = None
) -> dict[str, torch.Tensor]:
    """Hinge over both routes: ``d_total = hinge(real, fake) + hinge(real, fake_flip)``.

    Terms: d_real (the real half of one hinge), d_fake, d_fake_flip (when given), d_total.
    """
    r = hinge_real(real)
    terms = {"d_real": r, "d_fake": hinge_fake(fake)}
    total = r + terms["d_fake"]
    if fake_flip is not None:
        terms["d_fake_flip"] = hinge_fake(fake_flip)
        total = total + r + terms["d_fake_flip"]
    terms["d_total"] = total
    return terms


def generator_adv_losses(fake: DOutput, fake_flip: DOutput | None = None) -> dict[str, torch.Tensor]:
    """Terms g_adv and g_adv_flip (when given); the trainer weights and sums them."""
    terms = {"g_adv": generator_adv(fake)}
    if fake_flip is not None:
        terms["g_adv_flip"] = generator_adv(fake_flip)
    return terms


def feature_matching(fake: DOutput, real: DOutput) -> torch.Tensor:
    """mean over scales of the summed L1 between D features of fake and (fixed) real."""
    per_scale = []
    for (_, ff), (_, rf) in zip(fake, real, strict=True):
        if not ff:
            continue
        per_scale.append(sum(F.l1_loss(a.float(), b.detach().float()) for a, b in zip(ff, rf, strict=True)))
    if not per_scale:
        raise ValueError("feature matching needs D features, but the discriminator returned none")
    return torch.stack(per_scale).mean()


def l1_loss(
    fake_rgb: torch.Tensor, real_rgb: torch.Tensor, fake_h: torch.Tensor, real_h: torch.Tensor
) -> torch.Tensor:
    """Mean |fake - real| over terrain RGB [N, 3, H, W] and height [N, 1, H, W] (both -1..1)."""
    return F.l1_loss(fake_rgb.float(), real_rgb.float()) + F.l1_loss(fake_h.float(), real_h.float())


def r1_penalty(
    real_logits: Sequence[torch.Tensor], real_input: torch.Tensor, first_channel: int = 0
) -> torch.Tensor:
    """E[|grad_x sum D(x)|^2] at real inputs, over channels ``first_channel:`` (the image, not the
    conditioning segmentation). ``real_input`` must require grad; the graph is kept for backward."""
    total = sum(lg.float().sum() for lg in real_logits)
    (grad,) = torch.autograd.grad(total, real_input, create_graph=True)
    return grad[:, first_channel:].float().pow(2).flatten(1).sum(1).mean()


def weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum of weights[k] * terms[k] over the weighted terms present (weight 0 terms are skipped)."""
    total = None
    for k, w in weights.items():
        if w and k in terms:
            total = terms[k] * w if total is None else total + terms[k] * w
    if total is None:
        raise ValueError(f"no weighted term among {sorted(terms)}")
    return total


def update_g_enabled(enabled: bool, d_loss: float, upper: float, lower: float) -> bool:
    """The original's dynamic D:G switch with hysteresis.

    G is switched off when the last D loss is >= ``upper`` (D is losing: let it catch up) and on again
    when it falls below ``lower``; in between the state stays. A non-finite loss changes nothing (that step
    is skipped anyway). With several processes ``d_loss`` must be the all-process mean, so that every rank
    takes the same decision.
    """
    if d_loss != d_loss or d_loss in (float("inf"), float("-inf")):
        return enabled
    if enabled and d_loss >= upper:
        return False
    if not enabled and d_loss < lower:
        return True
    return enabled


def border_zones(onehot: torch.Tensor, near_px: int = 3) -> torch.Tensor:
    """[N, 2, H, W] float masks: pixels within ``near_px`` of a border between two land classes, and the
    rest. Water (channel 0) is left out of the border test: coasts are not painted borders."""
    k = 2 * near_px + 1
    present = F.max_pool2d(onehot[:, 1:].float(), k, stride=1, padding=near_px)  # [N, C-1, H, W]
    near = (present.sum(1, keepdim=True) >= 2).float()  # two land classes in the window
    return torch.cat([near, 1.0 - near], 1)


def slope_stats_loss(
    fake_h: torch.Tensor, real_h: torch.Tensor, onehot: torch.Tensor, near_px: int = 3, min_px: int = 16
) -> torch.Tensor:
    """Per-class, per-zone matching of mean slope: mean over (sample, class, zone) cells with at least
    ``min_px`` pixels of |log mean|grad fake| - log mean|grad real||.

    Heights [N, 1, H, W], onehot [N, C, H, W]. The zones (near a land-class border / inside a class) make
    a step along a painted border cost as much as a flat interior: both are a wrong mean slope in one
    cell. A statistic, not a pixel loss, so it does not pull towards the conditional mean (as L1 does).
    """
    from terrain_core.nn.layers import finite_differences

    def grad_mag(h: torch.Tensor) -> torch.Tensor:
        return finite_differences(h.float()).pow(2).sum(1).add(1e-12).sqrt()  # [N, H, W]

    cells = onehot.float()[:, :, None] * border_zones(onehot, near_px)[:, None]  # [N, C, 2, H, W]
    # eps: heights are -1..1, so 1e-4 is about a tenth of the flattest real interiors' mean slope per pixel
    return _cell_log_ratio(grad_mag(fake_h), grad_mag(real_h), cells, min_px, eps=1e-4)


def _cell_log_ratio(
    fake: torch.Tensor, real: torch.Tensor, cells: torch.Tensor, min_px: int, eps: float
) -> torch.Tensor:
    """mean over cells with >= min_px pixels of |log(mean fake + eps) - log(mean real + eps)|, 0 when
    there is none; fake, real [N, H, W] >= 0, cells [N, K..., H, W] 0/1 masks."""
    count = cells.sum((-2, -1))  # [N, K...]
    valid = (count >= min_px).float()
    extra = (None,) * (cells.dim() - 3)

    def means(x: torch.Tensor) -> torch.Tensor:
        return (cells * x[(slice(None), *extra)]).sum((-2, -1)) / count.clamp(min=1.0)

    diff = (torch.log(means(fake) + eps) - torch.log(means(real).detach() + eps)).abs()
    # A masked mean, not diff[valid] after a check of valid.any(): no value decides a shape or a branch,
    # so the training step needs no device-to-host sync here.
    return (diff * valid).sum() / valid.sum().clamp(min=1.0)


def detail_stats_loss(
    fake_rgb: torch.Tensor, real_rgb: torch.Tensor, onehot: torch.Tensor, min_px: int = 16
) -> torch.Tensor:
    """Per-class matching of texture detail: mean over (sample, class) of |log mean|high_pass(fake)| -
    log mean|high_pass(real)||, on the shaded RGB [N, 3, H, W] (-1..1). Flat water stays flat and land
    gets the detail of its class: the counterweight of :func:`diversity_loss`, which pays for detail
    that differs between seeds whether or not the class has any."""

    def detail(x: torch.Tensor) -> torch.Tensor:
        return high_pass(x.float()).abs().mean(1)  # [N, H, W]

    return _cell_log_ratio(detail(fake_rgb), detail(real_rgb), onehot.float(), min_px, eps=1e-3)


def high_pass(x: torch.Tensor, k: int = 9) -> torch.Tensor:
    """x minus its k x k local mean: [N, C, H, W] -> same (the detail a seed should change)."""
    return x - F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def diversity_loss(
    a: tuple[torch.Tensor, ...],
    b: tuple[torch.Tensor, ...],
    cap: float = 0.05,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mode seeking (Mao et al. 2019; Yang et al. 2019): minus the capped mean L1 distance between the
    detail (:func:`high_pass`) of two outputs of the same maps with different noise.

    ``a`` and ``b``: matching tuples of [N, C, H, W] outputs (e.g. height and texture). Per sample and
    output the distance is capped at ``cap`` (so that G is not paid for noise beyond the real detail);
    the loss is minus their mean, in [-cap, 0]. ``mask`` [N, 1, H, W] (0/1): where detail may differ,
    e.g. land only (paying for differences on water speckled the water in a first run).
    """
    dists = []
    for x, y in zip(a, b, strict=True):
        diff = (high_pass(x.float()) - high_pass(y.float())).abs()  # [N, C, H, W]
        if mask is None:
            d = diff.flatten(1).mean(1)  # [N]
        else:
            m = mask.float().expand_as(diff)
            d = (diff * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1.0)
        dists.append(d.clamp(max=cap))
    return -torch.stack(dists).mean()
