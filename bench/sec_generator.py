"""Section generator_efficiency: time per megapixel of each preset on both runtimes, and achieved GFLOP/s
against a plain stack of the same convolutions and matrix products.

FLOPs are counted on the real model (one forward under torch.utils.flop_counter.FlopCounterMode); the
same forward is recorded op by op (every convolution and matrix product with its exact shapes, strides
and padding), and the "plain stack" replays exactly those kernels on fresh inputs: the same FLOPs and
shapes without modulation, noise, attention, resizes, padding copies or activations. The ratio
plain time / model time is the share of the plain stack's throughput the generator reaches. Target: >= 0.6.
"""

from __future__ import annotations

from bench.common import Options, Section, interleaved, median, paired_ratio, verdict

TARGET = 0.6
PRESETS = ("tiny", "small", "seed-1.1", "seed-1.2")
ONNX_EXPORT = ("tiny", "small")  # exported on demand; the others only when cached or --export-all


def _recorded_ops(net, args):
    """(FLOPs, [(op, args, kwargs)]) of the conv / matmul kernels one forward runs, with shape-only args."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    kinds = {
        aten.convolution.default,
        aten.mm.default,
        aten.addmm.default,
        aten.bmm.default,
        aten.baddbmm.default,
    }
    ops = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in kinds:
                spec = [("T", tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
                ops.append((func, spec, dict(kwargs)))
            return func(*args, **kwargs)

    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            with Recorder():
                net(*args)
    return int(fc.get_total_flops()), ops


def _plain_stack(ops):
    """A callable that runs the recorded kernels on preallocated random inputs (one pass = one forward)."""
    import torch

    g = torch.Generator().manual_seed(0)
    prepared = []
    for func, spec, kwargs in ops:
        args = [
            torch.randn(*a[1], generator=g, dtype=a[2]) if isinstance(a, tuple) and a and a[0] == "T" else a
            for a in spec
        ]
        prepared.append((func, args, kwargs))

    def run():
        with torch.no_grad():
            for func, args, kwargs in prepared:
                func(*args, **kwargs)

    return run


def sizes(opts: Options) -> int:
    return 64 if opts.smoke else 256 if opts.quick else 512


def _time_runtimes(name: str, labels, plain, opts: Options, sec: Section) -> dict[str, list[float]]:
    """Interleaved timings of the preset on each runtime (the network call alone) and of the plain stack."""
    from bench.models import cached_onnx, preset_files
    from terrain_core.runtime import TerrainGenerator

    # ONNX export of the big presets takes minutes (seed-1.2's attention: over 30 min on 2 busy
    # cores), so they run on ONNX Runtime only when an export of the current source is cached.
    want_onnx = not opts.smoke and (name in ONNX_EXPORT or opts.export_all or cached_onnx(name))
    st_path, onnx_path = preset_files(name, onnx=want_onnx)
    if not want_onnx and not opts.smoke:
        sec.notes.append(f"{name}: ONNX Runtime not measured (no cached export; run with --export-all)")
    runners = {}
    gens = {"torch": TerrainGenerator.load(st_path, threads=opts.threads)}
    if onnx_path is not None:
        gens["onnxruntime"] = TerrainGenerator.load(onnx_path, threads=opts.threads)
    net_times: dict[str, list[float]] = {k: [] for k in gens}

    def make(rt, gens=gens, net_times=net_times):
        def f():
            res = gens[rt].generate(labels, seed=0, tile=0)
            net_times[rt].append(res.timings["network"])

        return f

    for rt in gens:
        runners[rt] = make(rt)
    runners["plain"] = plain
    reps = opts.reps(5, 3)
    times = interleaved(runners, repeats=reps, warmup=1)
    for rt in gens:
        # the network call alone (the runtime's own timing), not label checks, padding or assembly
        times[rt] = net_times[rt][-reps:]
    return times


def _measure_preset(
    name: str, size: int, labels, opts: Options, sec: Section
) -> list[tuple[str, str, float]]:
    """One preset: FLOPs and kernels of a forward, its runtimes against the plain stack; appends the rows
    and checks to ``sec`` and returns (preset, runtime, share) per runtime."""
    import torch

    from terrain_core.config import ShadowConfig, preset
    from terrain_core.nn.inference import InferenceNet
    from terrain_core.noise import draw_inputs
    from terrain_core.runtime import _one_hot

    shares = []
    cfg = preset(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = InferenceNet(cfg, ShadowConfig()).eval()
    inp = draw_inputs(cfg, size, size, seed=0)
    args = [torch.from_numpy(a) for a in (_one_hot(labels, cfg.num_classes), inp.z, *inp.noises)]
    flops, ops = _recorded_ops(net, args)
    plain = _plain_stack(ops)
    times = _time_runtimes(name, labels, plain, opts, sec)
    runtimes = [rt for rt in times if rt != "plain"]
    mp = size * size / 1e6
    t_plain = median(times["plain"])
    n_convs = sum(1 for o in ops if o[0] is torch.ops.aten.convolution.default)
    for rt in runtimes:
        share = paired_ratio(times["plain"], times[rt])
        shares.append((name, rt, share))
        t = median(times[rt])
        sec.rows.append(
            {
                "preset": name,
                "runtime": rt,
                "s/MP": t / mp,
                "GFLOP/MP": flops / 1e9 / mp,
                "GFLOP/s": flops / 1e9 / t,
                "plain GFLOP/s": flops / 1e9 / t_plain,
                "share": share,
                "status": verdict(share >= TARGET),
            }
        )
    sec.checks[name] = {
        "flops": flops,
        "kernels": len(ops),
        "convs": n_convs,
        "params": sum(p.numel() for p in net.parameters()),
    }
    return shares


def run(opts: Options) -> Section:
    import torch

    from bench.maps import class_map

    torch.set_num_threads(opts.threads)
    size = sizes(opts)
    presets = ("tiny", "small") if opts.smoke else PRESETS
    sec = Section(
        "generator_efficiency",
        target=f"generator conv+matmul GFLOP/s >= {TARGET:g} x a plain stack of the same kernels "
        f"({size}x{size}, batch 1)",
        ratio_label="min throughput share (model / plain)",
    )
    labels = class_map(size)
    shares = [s for name in presets for s in _measure_preset(name, size, labels, opts, sec)]
    worst = min(shares, key=lambda s: s[2])
    sec.ratio = worst[2]
    sec.status = verdict(worst[2] >= TARGET)
    sec.notes.append(
        f"share = plain-stack time / model time (median of paired rounds); worst: {worst[0]} on {worst[1]}"
    )
    sec.notes.append(
        "GFLOP counts only convolutions and matrix products (FlopCounterMode); the plain stack replays "
        "exactly those aten kernels with the recorded shapes"
    )
    return sec
