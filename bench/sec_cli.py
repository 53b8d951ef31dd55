"""Section cli_large: the whole default command, ``python -m terrain_core generate``, on a large map.

Full: 4096x4096 and 8192x8192 (both tiled automatically); quick: 2048; smoke: 256. Each size runs once
in a fresh interpreter (the CLI's own process: imports, model, map, generation and every default output
file), which reports its peak RSS (VmHWM, as ``bench.common.peak_rss_bytes``: what ``/usr/bin/time -v``
calls the maximum resident set size), its peak and current RSS when writing starts, and the peak while
writing (the high-water mark is reset when writing starts), so the table shows what writing adds on top
of the generation's result. Targets at 4096 (issue 16): peak < 2 GiB, < 300 MB
written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import GiB, MiB, Options, Section, child_env, verdict

PEAK_TARGET = 2 * GiB
BYTES_TARGET = 300e6
TARGET_SIZE = 4096

# Runs the CLI in this interpreter and prints one JSON line: peaks and the files written. write_outputs
# is wrapped only to read the memory state at its start.
_DRIVER = r"""
import json, sys, time
from pathlib import Path
from bench._child import reset_peak
from bench.common import current_rss_bytes, peak_rss_bytes
from terrain_core import cli, outputs
state = {}
real = outputs.write_outputs
def wrapped(*a, **k):
    state["peak_before_write"] = peak_rss_bytes()
    state["rss_at_write"] = current_rss_bytes()
    state["reset"] = reset_peak()  # from here on the high-water mark is the writing's own
    t0 = time.perf_counter()
    try:
        return real(*a, **k)
    finally:
        state["write_s"] = time.perf_counter() - t0
        state["peak_write"] = peak_rss_bytes() if state["reset"] else None
outputs.write_outputs = wrapped
t0 = time.perf_counter()
rc = cli.main(sys.argv[1:])
state.update(rc=rc, seconds=time.perf_counter() - t0)
state["peak"] = max(state.get("peak_before_write", 0), state.get("peak_write") or 0, peak_rss_bytes())
out = Path(sys.argv[sys.argv.index("--out") + 1])
state["files"] = {p.name: p.stat().st_size for p in sorted(out.iterdir())} if out.is_dir() else {}
meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
state["obj"] = meta.get("obj", {})
state["tiles"] = meta.get("timings", {}).get("tiles")
print("BENCH " + json.dumps(state))
"""


def run_cli(size: int, threads: int, tmp: Path) -> dict:
    from bench.maps import write_painted_png

    src = write_painted_png(tmp / "map.png", 512 if size >= 512 else size)
    out = tmp / f"out_{size}"
    args = ["generate", "--labels", str(src), "--out", str(out), "--seed", "3", "--threads", str(threads)]
    if size != 512:
        args += ["--size", str(size)]
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, *args], env=child_env(threads), capture_output=True, text=True,
        timeout=3600,
    )  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        raise RuntimeError(f"the CLI at {size} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    res = json.loads(line[6:])
    res["summary"] = [ln for ln in proc.stdout.splitlines() if ln.startswith(("mesh:", "time:"))]
    return res


def run(opts: Options) -> Section:
    sizes = [256] if opts.smoke else [2048] if opts.quick else [TARGET_SIZE, 2 * TARGET_SIZE]
    sec = Section(
        "cli_large",
        target=f"python -m terrain_core generate at {TARGET_SIZE}x{TARGET_SIZE}, default outputs: peak RSS "
        f"< 2 GiB and < {BYTES_TARGET / 1e6:.0f} MB written",
        ratio_label=f"peak GiB at {sizes[0]}",
    )
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        for n in sizes:
            runs[n] = run_cli(n, opts.threads, Path(tmp))
    for n, r in runs.items():
        total = sum(r["files"].values())
        sec.rows.append(
            {
                "size": n,
                "tiles": r["tiles"],
                "seconds": r["seconds"],
                "write_s": r["write_s"],
                "peak_RSS_MiB": r["peak"] / MiB,
                "peak_before_write_MiB": r["peak_before_write"] / MiB,
                "RSS_at_write_MiB": r["rss_at_write"] / MiB,
                "peak_writing_MiB": r["peak_write"] / MiB if r["peak_write"] else None,
                "written_MB": total / 1e6,
                "obj_vertices": r["obj"].get("vertices"),
            }
        )
        sizes_mb = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in r["files"].items())
        sec.notes.append(f"{n}: files (MB): {sizes_mb}; " + " / ".join(r["summary"]))
    first = runs[sizes[0]]
    sec.ratio = first["peak"] / GiB
    ok = first["peak"] < PEAK_TARGET and sum(first["files"].values()) < BYTES_TARGET
    sec.status = verdict(ok) if sizes[0] == TARGET_SIZE else "INFO"
    sec.checks = {
        str(n): {"peak": r["peak"], "written": sum(r["files"].values()), "rc": r["rc"]}
        for n, r in runs.items()
    }
    return sec
