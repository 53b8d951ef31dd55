"""A compact resume state that a training campaign commits beside the shipped model.

Training machines here are short-lived and a run folder does not outlive its machine, so the state a
next run continues from must be small enough to commit: G, D and the EMA copy in fp16 (a few MB for the
``small`` preset), plus the counters that matter for continuing (EMA warm-up, D:G switch), in one
``.safetensors`` file. It is replaced, not added to. Loading it never executes code (safetensors only).

What it does not hold: the optimisers' moments (Adam restarts; a few hundred steps of warm-up) and the
data order (the next run draws its own). ``python -m training.train ... --resume-from FILE`` starts a new
run folder from it.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from terrain_core.output_set import atomic_file

FORMAT = "terrain-gan-resume/1"


class ResumeStateError(ValueError):
    """The file is missing, not a resume state, or does not fit this run's model."""


def save_resume_state(trainer, path: str | Path, *, history: list[dict[str, Any]] | None = None) -> Path:
    """Write G, D, EMA (fp16) and the counters of ``trainer`` to ``path`` (.safetensors), atomically.

    ``history``: what earlier runs of the campaign did (steps, data, date), carried forward so that the
    shipped model's provenance can say how it was made.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ResumeStateError(f"{path}: a resume state is a .safetensors file")
    tensors: dict[str, torch.Tensor] = {}
    nets = {"g": trainer.gen, "d": trainer.disc, "ema": trainer.ema}
    for key, net in nets.items():
        if net is None:
            continue
        for name, t in net.state_dict().items():
            t = t.detach().to("cpu")
            tensors[f"{key}.{name}"] = (t.half() if t.is_floating_point() else t).contiguous()
    run = {
        "steps": trainer.step,
        "g_updates": trainer.g_updates,
        "d_updates": trainer.d_updates,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": trainer.cfg.to_dict(),
    }
    meta = {
        "format": FORMAT,
        "model": trainer.cfg.model,
        "generator_config": json.dumps(trainer.cfg.generator_config().to_dict()),
        "g_updates": str(trainer.g_updates),
        "g_on": str(int(trainer.g_on)),
        "history": json.dumps([*(history or []), run]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:  # the one single-file helper: temp name, one permission rule, rename
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_resume_state(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a resume state; ResumeStateError when it is not one."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise ResumeStateError(f"--resume-from: {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ResumeStateError(
                    f"--resume-from: {p} is not a training resume state (format {meta.get('format')!r}, "
                    f"want {FORMAT!r}); for a model file use --set init_from=FILE"
                )
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except (SafetensorError, OSError) as e:
        raise ResumeStateError(f"--resume-from: {p} is not a readable .safetensors file ({e})") from None
    return meta, tensors


def load_resume_state(trainer, path: str | Path) -> dict[str, Any]:
    """Load G, D and EMA of ``trainer`` from ``path`` (fp16 -> the networks' dtype) and its EMA counter;
    returns {"history": [...], "g_updates": int}. The optimisers start fresh."""
    meta, tensors = read_resume_state(path)
    nets = {"g": trainer.gen, "d": trainer.disc, "ema": trainer.ema}
    for key, net in nets.items():
        if net is None:
            continue
        own = net.state_dict()
        part = {k[len(key) + 1 :]: v for k, v in tensors.items() if k.startswith(key + ".")}
        if not part and key == "ema":
            part = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
        missing = sorted(set(own) - set(part))
        wrong = sorted(k for k in own if k in part and tuple(part[k].shape) != tuple(own[k].shape))
        if missing or wrong:
            few = ", ".join((missing + wrong)[:3])
            raise ResumeStateError(
                f"--resume-from: {path} does not fit this config's model ({len(missing)} tensors missing, "
                f"{len(wrong)} of another shape: {few}); resume with the config it was made with "
                f"(model {meta.get('model')!r})"
            )
        net.load_state_dict({k: part[k].to(own[k].dtype) for k in own})
    trainer.g_updates = int(meta.get("g_updates", "0"))
    trainer.g_on = bool(int(meta.get("g_on", "1")))
    return {"history": json.loads(meta.get("history", "[]")), "g_updates": trainer.g_updates}
