"""Several processes (torchrun): set-up, gradient averaging, agreement checks.

Gradients are averaged by hand, one all_reduce per step over one flat buffer holding both networks'
gradients and the loss values (as StyleGAN3 does), instead of wrapping the networks in
DistributedDataParallel: DDP does not support ``torch.autograd.grad``. It averages gradients from hooks
that fire as ``.backward()`` accumulates into ``.grad``, and ``autograd.grad`` returns gradients without
accumulating them, so DDP would never reduce them. The step needs ``autograd.grad`` twice: for the joint
update (D's and G's gradients from one forward, each for its own parameters) and for R1 (the gradient of
D with respect to its input, differentiated again). Because the losses travel in
the same buffer, every rank sees the same all-process mean D loss and so takes the same G on/off
decision; a rank deciding differently would leave the others waiting in the next all_reduce forever.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


class DeviceError(RuntimeError):
    """The asked-for device is not there; the message says what to use instead."""


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(pref: str | None) -> torch.device:
    """'cuda' / 'cpu' / None (= cuda when available). Asking for cuda without one is an error."""
    if pref in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if pref not in ("cpu",) and not pref.startswith("cuda"):
        raise DeviceError(f"--device must be cpu or cuda, got {pref!r}")
    return torch.device(pref)


def init(device_pref: str | None = None) -> DistEnv:
    """Join the process group when started by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_pref)
    if world <= 1:
        return DistEnv(device=device)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world=world, local_rank=local, device=device)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        # Leave together: rank 0 still writes the summary while the others reach this point, and a gloo
        # group torn down on one side while the other is busy aborted a rank now and then ("terminate
        # called without an active exception", exit -6) in the 2-process resume test.
        dist.barrier()
        dist.destroy_process_group()


def all_mean_(flat: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """In-place mean over processes (no-op with one)."""
    if env.distributed:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(env.world)
    return flat


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when ``flag`` is true on any (so that all ranks take the same branch)."""
    if not env.distributed:
        return flag
    t = torch.tensor([float(flag)], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_module_(module: torch.nn.Module, env: DistEnv) -> None:
    """Start every rank from rank 0's parameters and buffers."""
    if env.distributed:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_gather_objects(obj, env: DistEnv) -> list:
    if not env.distributed:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def param_digest(*modules: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for m in modules:
        for name, p in m.state_dict().items():
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
