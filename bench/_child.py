"""Measurements that need a process of their own (peak memory): ``python -m bench._child TASK ARGS OUT N``.

ARGS is a JSON object, OUT the JSON file to write, N the CPU threads. Each task reports:
- ``peak_rss``: the process's peak resident memory over its whole life (imports included), the figure a
  user sees for "generate this map in a fresh process";
- ``rise``: peak resident memory during the measured call minus resident memory just before it (the peak
  is reset right before the call through /proc/self/clear_refs, so earlier transients do not count).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from bench.common import current_rss_bytes, peak_rss_bytes


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Peak memory of one call: reset the peak, run, read it back."""

    def __init__(self):
        self.before = current_rss_bytes()
        self.peak_before_reset = peak_rss_bytes()
        self.exact = reset_peak()

    def done(self) -> dict:
        peak = peak_rss_bytes()
        return {
            "rss_before": self.before,
            "peak_during": peak,
            "rise": max(0, peak - self.before),
            "exact": self.exact,
        }


# ---------------------------------------------------------------------------------------------- tasks


def task_attention(args: dict, threads: int) -> dict:
    """One local-attention call (ours or the naive unfold), forward only or forward + backward."""
    import torch

    from terrain_core.nn import layers

    torch.set_num_threads(threads)
    n, c, s, k = args["batch"], args["channels"], args["size"], args["k"]
    fn = {"ours": layers.local_attention, "naive": layers.local_attention_naive}[args["variant"]]
    g = torch.Generator().manual_seed(0)
    grad = bool(args.get("backward"))
    q = torch.randn(n, c, s, s, generator=g).requires_grad_(grad)  # [N, C, H, W]
    kp = torch.randn(n, c, s + k - 1, s + k - 1, generator=g).requires_grad_(grad)  # padded keys
    vp = torch.randn(n, c, s + k - 1, s + k - 1, generator=g).requires_grad_(grad)  # padded values
    emb = (torch.randn(c, k * k, generator=g) * 0.05).requires_grad_(grad)  # [C, k*k]
    if not grad:
        torch.set_grad_enabled(False)
    m = Meter()
    t0 = time.perf_counter()
    out = fn(q, kp, vp, emb, k, args.get("heads", 1))
    if grad:
        out.square().mean().backward()
    dt = time.perf_counter() - t0
    res = m.done()
    res["seconds"] = dt
    res["out_checksum"] = float(out.detach().double().sum())
    return res


def task_generate(args: dict, threads: int) -> dict:
    """TerrainGenerator.generate on a size x size map (tiled or not), timed, with the process peak."""
    from terrain_core.runtime import TerrainGenerator

    path = args.get("model")
    gen = TerrainGenerator.load(path, threads=threads)
    labels = np.load(args["labels"]) if args.get("labels") else None
    size = args["size"]
    if labels is None:
        from bench.maps import class_map

        labels = class_map(size)
    tile = args.get("tile")  # None = the runtime's automatic choice
    # Warm-up at the shape the network will run at (the whole map untiled, else one tile): the first call
    # at a new shape pays one-time costs (oneDNN primitives, ORT arenas, allocator growth) that are not
    # per-pixel cost and would otherwise land on the untiled run only (its one call) but be spread over
    # 25 tiles in the tiled one.
    w = min(size, tile or 1024) if tile != 0 else size
    gen.generate(labels[:w, :w], seed=1, tile=0)
    times, timings = [], []
    m = Meter()
    for r in range(args.get("repeats", 1)):
        t0 = time.perf_counter()
        res = gen.generate(labels, seed=r, tile=tile)
        times.append(time.perf_counter() - t0)
        timings.append(res.timings)
    out = m.done()
    out.update(
        seconds=times,
        timings=timings,
        runtime=gen.runtime,
        model=gen.name,
        peak_rss=peak_rss_bytes() if not m.exact else max(m.peak_before_reset, out["peak_during"]),
        height_finite=bool(np.isfinite(res.height).all()),
        shape=list(res.height.shape),
    )
    return out


def task_train_step(args: dict, threads: int) -> dict:
    """Seconds per training step and the peak memory of the step, for one preset and amp setting."""
    import torch

    from training.train import Trainer
    from training.train_config import load_config

    torch.set_num_threads(threads)
    overrides = [
        # No download: without local VGG19 weights the preset falls back to feature matching, which is
        # what a training run on this machine does.
        "vgg_download=false",
        "dynamic_ratio=false",  # every step updates D and G (the switch would make steps unequal)
        f"amp={args.get('amp', 'off')}",
        f"channels_last={'true' if args.get('channels_last') else 'false'}",
    ]
    if args.get("batch"):
        overrides.append(f"batch_size={args['batch']}")
    if args.get("crop"):
        overrides.append(f"crop={args['crop']}")
    cfg = load_config(args["preset"], overrides)
    from training import distributed as D

    env = D.DistEnv(device=D.pick_device(args.get("device", "auto")))  # a GPU when there is one
    trainer = Trainer(cfg, env, log=lambda *a, **k: None)
    n, size = cfg.batch_size, cfg.crop
    g = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 7, (n, max(1, size // 16), max(1, size // 16)), generator=g)
    labels = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :size, :size]  # [N, H, W]
    batch = {
        "onehot": torch.nn.functional.one_hot(labels, 7).permute(0, 3, 1, 2).float(),  # [N, 7, H, W]
        "labels": labels,
        "terrain": torch.rand((n, 3, size, size), generator=g) * 2 - 1,
        "height": torch.rand((n, 1, size, size), generator=g) * 2 - 1,
    }
    trainer.train_step(batch)  # warm-up: optimiser state, allocator growth
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    m = Meter()
    times = []
    for _ in range(args.get("steps", 3)):
        t0 = time.perf_counter()
        stats = trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = m.done()
    out.update(
        seconds=times,
        batch=n,
        crop=size,
        device=str(trainer.device),
        amp=str(trainer.amp),
        channels_last=bool(trainer.channels_last),
        peak_rss=peak_rss_bytes(),
        cuda_peak=torch.cuda.max_memory_allocated() if cuda else None,
        g_on=stats.get("g_on"),
        finite=all(v == v for v in stats.values()),
    )
    return out


def task_erode(args: dict, threads: int) -> dict:
    """terrain_core.erosion.erode on a saved height and class map, timed, with the process peak."""
    from terrain_core.erosion import erode

    height = np.load(args["height"])
    labels = np.load(args["labels"])
    m = Meter()
    t0 = time.perf_counter()
    e = erode(height, labels, strength=args.get("level", "medium"), cell_size_m=30.0, seed=0)
    dt = time.perf_counter() - t0
    out = m.done()
    b = e.balance
    out.update(
        seconds=dt,
        peak_rss=peak_rss_bytes() if not m.exact else max(m.peak_before_reset, out["peak_during"]),
        shape=list(e.height_m.shape),
        finite=bool(np.isfinite(e.height_m).all()),
        balance_error=abs(b["eroded_m3"] - b["deposited_m3"] - b["outflow_m3"]) / max(b["eroded_m3"], 1e-9),
    )
    return out


TASKS = {
    "attention": task_attention,
    "generate": task_generate,
    "train_step": task_train_step,
    "erode": task_erode,
}


def main(argv: list[str]) -> int:
    task, args, out_path, threads = argv[0], json.loads(argv[1]), argv[2], int(argv[3])
    result = TASKS[task](args, threads)
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
