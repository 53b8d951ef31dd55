"""Section train_step: seconds per training step and peak memory for the 'tiny' and 'small' presets.

Each setting runs in a fresh process: one warm-up step, then timed steps of training/train.py's
``Trainer.train_step`` (the real step: G forward with both shading routes, one D forward over real and
fake, both backward passes, Adam, EMA) on a synthetic batch of the preset's batch size and crop. The
dynamic D:G switch is off so that every step updates both networks. AMP (bf16 autocast) on and off on
CPU; on a GPU also channels-last on and off (the trainer applies channels-last on CUDA only).
No target: figures for planning runs; bf16's speed relative to fp32 is the ratio reported.
"""

from __future__ import annotations

from bench.common import INFO, MiB, Options, Section, median, run_child


def run(opts: Options) -> Section:
    import torch

    gpu = torch.cuda.is_available()
    presets = ("tiny",) if opts.smoke else ("tiny", "small")
    steps = opts.reps(5, 3)
    sec = Section(
        "train_step",
        target="no target: seconds per step and peak memory per preset and setting (bf16 vs fp32 reported)",
        ratio_label="small: s/step bf16 / fp32",
    )
    variants = [("off", False), ("bf16", False)]
    if gpu:
        variants += [("off", True), ("bf16", True)]
    results = {}
    for p in presets:
        for amp, cl in variants:
            args = {"preset": p, "amp": amp, "channels_last": cl, "steps": steps}
            if opts.smoke:
                args.update(batch=1, crop=64)
            r = run_child("train_step", args, opts.threads)
            results[(p, amp, cl)] = r
            sec.rows.append(
                {
                    "preset": p,
                    "device": r["device"],
                    "batch": r["batch"],
                    "crop": r["crop"],
                    "amp": amp,
                    "channels_last": r["channels_last"],
                    "s/step": median(r["seconds"]),
                    "img/s": r["batch"] / median(r["seconds"]),
                    "step_peak_rise_MiB": r["rise"] / MiB,
                    "process_peak_MiB": r["peak_rss"] / MiB,
                    "gpu_peak_MiB": None if r["cuda_peak"] is None else r["cuda_peak"] / MiB,
                    "finite": r["finite"],
                }
            )
    last = presets[-1]
    off, bf = results.get((last, "off", False)), results.get((last, "bf16", False))
    if off and bf:
        sec.ratio = median(bf["seconds"]) / median(off["seconds"])
        sec.ratio_label = f"{last}: s/step bf16 / fp32"
    sec.status = INFO
    sec.notes.append(
        f"{steps} timed steps after one warm-up, median; dynamic D:G switch off (every step updates D and "
        "G); VGG19 weights are not on this machine, so the perceptual term is the preset's fallback "
        "(discriminator feature matching)"
    )
    if not gpu:
        sec.notes.append("no GPU here: channels-last is not applied on CPU by the trainer (CUDA only)")
    return sec
