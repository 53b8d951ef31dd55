"""Section attention_memory: our local self-attention vs the naive unfold implementation (the original's).

Shapes: 64x64 features, k = 9, 128 channels, batch 4, one head. Peak memory of each in a fresh process
(the kernel's peak RSS, reset just before the call), time interleaved in this process. Target: ours at most
a quarter of the naive peak, and no slower. Forward + backward (training) is reported beside it.
"""

from __future__ import annotations

from bench.common import MiB, Options, Section, interleaved, median, paired_ratio, run_child, verdict

MEM_TARGET = 0.25
TIME_TARGET = 1.0


def shapes(opts: Options) -> dict:
    if opts.smoke:
        return {"batch": 1, "channels": 16, "size": 16, "k": 5}
    return {"batch": 4, "channels": 128, "size": 64, "k": 9}


def _time_both(q, kp, vp, emb, k: int, opts: Options) -> tuple[dict[str, list[float]], float]:
    """Interleaved forward timings of ours and the naive unfold, and the largest output difference."""
    import torch

    from terrain_core.nn import layers

    outs = {}

    def call(name, fn):
        def f():
            with torch.no_grad():
                outs[name] = fn(q, kp, vp, emb, k, 1)

        return f

    times = interleaved(
        {"ours": call("ours", layers.local_attention), "naive": call("naive", layers.local_attention_naive)},
        repeats=opts.reps(5, 3),
        warmup=1,
    )
    return times, float((outs["ours"] - outs["naive"]).abs().max())


def _peak_memory(shp: dict, threads: int) -> dict[tuple[str, bool], dict]:
    """Each variant's memory rise, forward alone and forward + backward, each in a fresh child process."""
    return {
        (variant, backward): run_child(
            "attention", {**shp, "variant": variant, "backward": backward}, threads
        )
        for backward in (False, True)
        for variant in ("ours", "naive")
    }


def _rows(mem, times, fwd_ratio: float, time_ratio: float, bwd_ratio: float) -> list[dict]:
    rows = []
    for variant in ("ours", "naive"):
        rows.append(
            {
                "impl": variant,
                "fwd_peak_MiB": mem[(variant, False)]["rise"] / MiB,
                "fwd_median_s": median(times[variant]),
                "fwd+bwd_peak_MiB": mem[(variant, True)]["rise"] / MiB,
                "fwd+bwd_s (1 run)": mem[(variant, True)]["seconds"],
            }
        )
    rows.append(
        {
            "impl": "ours / naive",
            "fwd_peak_MiB": fwd_ratio,
            "fwd_median_s": time_ratio,
            "fwd+bwd_peak_MiB": bwd_ratio,
            "fwd+bwd_s (1 run)": mem[("ours", True)]["seconds"] / mem[("naive", True)]["seconds"],
        }
    )
    return rows


def run(opts: Options) -> Section:
    import torch

    shp = shapes(opts)
    n, c, s, k = shp["batch"], shp["channels"], shp["size"], shp["k"]
    sec = Section(
        "attention_memory",
        target=f"local attention at {s}x{s}, k={k}, {c} ch, batch {n}: peak <= {MEM_TARGET:g} x naive, "
        "time <= naive",
        ratio_label="peak memory ours / naive",
    )
    torch.set_num_threads(opts.threads)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, c, s, s, generator=g)  # [N, C, H, W]
    kp = torch.randn(n, c, s + k - 1, s + k - 1, generator=g)  # [N, C, H+k-1, W+k-1]
    vp = torch.randn(n, c, s + k - 1, s + k - 1, generator=g)
    emb = torch.randn(c, k * k, generator=g) * 0.05  # [C, k*k]
    times, max_diff = _time_both(q, kp, vp, emb, k, opts)
    time_ratio = paired_ratio(times["ours"], times["naive"])

    mem = _peak_memory(shp, opts.threads)
    fwd_ratio = mem[("ours", False)]["rise"] / max(1, mem[("naive", False)]["rise"])
    bwd_ratio = mem[("ours", True)]["rise"] / max(1, mem[("naive", True)]["rise"])
    sec.ratio = fwd_ratio
    sec.status = verdict(fwd_ratio <= MEM_TARGET and time_ratio <= TIME_TARGET and max_diff < 1e-4)
    sec.rows += _rows(mem, times, fwd_ratio, time_ratio, bwd_ratio)
    feat = n * c * s * s * 4
    sec.notes.append(
        f"peak = rise of the process's resident memory during one call over the memory just before it "
        f"(inputs already allocated; one feature map [N,C,H,W] = {feat / MiB:.1f} MiB; the naive unfold "
        f"holds [N,C,k*k,H,W] = {feat * k * k / MiB:.0f} MiB per unfolded tensor)"
    )
    sec.notes.append(
        f"outputs agree: max |ours - naive| = {max_diff:.1e}; time ratio ours/naive = "
        f"{time_ratio:.2f} (target <= {TIME_TARGET:g})"
    )
    sec.checks = {
        "max_abs_diff": max_diff,
        "time_ratio": time_ratio,
        "fwd_mem_ratio": fwd_ratio,
        "fwd_bwd_mem_ratio": bwd_ratio,
        "exact_peak": all(m["exact"] for m in mem.values()),
    }
    return sec
