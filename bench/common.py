"""Shared machinery of the benchmark: interleaved timing, medians, child processes for peak memory,
the section result record and the table.

The machine is shared and noisy, so every comparison is made inside one run: the variants being compared
are timed in alternation (A B A B ...), each ratio is the median of the per-round ratios, and absolute
times are reported as context only.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
GiB = 1024 * MiB

PASS, MISS, INFO, SKIP, ERROR = "PASS", "MISS", "INFO", "SKIP", "ERROR"


# ------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    quick: bool = False
    smoke: bool = False  # seconds-long: tiny sizes and one or two repeats (the test suite's mode)
    threads: int = 1
    repeats: int | None = None  # overrides every section's own repeat count
    verbose: bool = False
    export_all: bool = False  # export every preset to ONNX for generator_efficiency (slow)

    def reps(self, full: int, quick: int | None = None) -> int:
        """Repeats for a measurement: ``full`` normally, fewer in quick mode, 2 in smoke mode."""
        if self.smoke:
            return 2
        if self.repeats is not None:
            return max(1, self.repeats)
        if self.quick:
            return max(2, quick if quick is not None else min(full, 3))
        return full


# ------------------------------------------------------------------------------------------------- results


@dataclass
class Section:
    """What a section reports: its target, PASS/MISS, the headline ratio and a table of rows."""

    name: str
    target: str
    status: str = INFO
    ratio: float | None = None  # the headline figure compared against the target
    ratio_label: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)  # correctness checks made along the way
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "status": self.status,
            "ratio": self.ratio,
            "ratio_label": self.ratio_label,
            "rows": self.rows,
            "notes": self.notes,
            "checks": self.checks,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


def verdict(ok: bool) -> str:
    return PASS if ok else MISS


# -------------------------------------------------------------------------------------------------- timing


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in alternation so that load changes hit all of them alike.

    ``warmup`` untimed rounds first (caches, lazy initialisation, allocator growth). The order within a
    round rotates, so no variant always runs right after the same other one.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            gc.collect()
            t0 = time.perf_counter()
            fns[n]()
            out[n].append(time.perf_counter() - t0)
    return out


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of per-round ratios num[i] / den[i]: robust to load that changes between rounds."""
    return median([a / b for a, b in zip(num, den, strict=True) if b > 0])


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ child processes


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    Read from /proc/self/status (VmHWM), not from getrusage: Linux keeps ru_maxrss across fork + exec, so
    a child started by a process that once held 3 GB reports at least 3 GB there. VmHWM belongs to the
    process's own memory map and can be reset (see bench._child.reset_peak).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)


def current_rss_bytes() -> int:
    """Resident set size now (from /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(task: str, args: dict[str, Any], threads: int, timeout: float = 1800) -> dict[str, Any]:
    """Run ``bench._child`` task in a fresh interpreter; return its JSON result.

    A fresh process is the only honest way to read a peak: ru_maxrss never goes down, so each measured
    thing gets its own process, and the report gives both the process peak and the rise over the state
    just before the measured call (imports, model and inputs already in memory).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tf:
        out_path = tf.name
    try:
        cmd = [sys.executable, "-m", "bench._child", task, json.dumps(args), out_path, str(threads)]
        proc = subprocess.run(
            cmd, env=child_env(threads), capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise RuntimeError(f"child task {task} failed (exit {proc.returncode}):\n" + "\n".join(tail))
        with open(out_path) as f:
            return json.load(f)
    finally:
        try:
            os.unlink(out_path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for mod in ("numpy", "torch", "onnxruntime", "onnx", "bpy"):
        try:
            m = __import__(mod) if mod != "bpy" else None
            if mod == "bpy":
                from importlib.metadata import version

                info["bpy"] = version("bpy")
            else:
                info[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001  (a missing optional runtime is reported, not fatal)
            info[mod] = None
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        info["gpu"] = None
    return info


# ------------------------------------------------------------------------------------------------- table


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2e}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of dict rows (union of keys, in first-seen order)."""
    if not rows:
        return "  (no rows)"
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def blender_dirs() -> None:
    """Point Blender's user folders and caches into a temporary folder (never $HOME) before import bpy."""
    base = Path(tempfile.gettempdir()) / f"terrain-bench-blender-{os.getuid()}"
    for var, sub in (
        ("BLENDER_USER_RESOURCES", "user"),
        ("BLENDER_USER_CONFIG", "user/config"),
        ("BLENDER_USER_SCRIPTS", "user/scripts"),
        ("XDG_CACHE_HOME", "cache"),
        ("MESA_SHADER_CACHE_DIR", "mesa"),
    ):
        os.environ.setdefault(var, str(base / sub))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
