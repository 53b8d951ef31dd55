"""Section obj_export: terrain_core.objmesh.write_obj vs the original's per-vertex writer.

The baseline is ``objmesh._obj_reference_loop`` (a Python double loop writing one formatted line per
vertex, uv and face, as the original does). Target: ours at least 10x faster at 512x512, and our file
parses back with the right vertex, uv and face counts and the heights it was given.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.common import Options, Section, interleaved, median, paired_ratio, verdict

TARGET = 10.0


def height_field(n: int, seed: int = 0) -> np.ndarray:
    """A smooth, terrain-like [n, n] height in metres (0..~1200 m): ridges of a few sines plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / n
    h = np.zeros((n, n))
    for octave in range(5):
        f = 2.0**octave
        kx, ky, ph = rng.uniform(1, 3, 3)
        h += np.sin(2 * np.pi * f * (kx * x + 0.3 * y) + ph) * np.cos(2 * np.pi * f * ky * y) / f
    h += rng.normal(0, 0.01, (n, n))
    return (h - h.min()) / np.ptp(h) * 1200.0


def parse_obj(path: Path) -> dict:
    """Counts and vertex array of an OBJ file, checking every face corner refers to an existing v/vt."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    v = [ln[2:] for ln in lines if ln.startswith(b"v ")]
    vt = [ln[3:] for ln in lines if ln.startswith(b"vt ")]
    f = [ln[2:] for ln in lines if ln.startswith(b"f ")]
    verts = np.array(b" ".join(v).split(), dtype=np.float64).reshape(-1, 3)
    uvs = np.array(b" ".join(vt).split(), dtype=np.float64).reshape(-1, 2)
    corners = b" ".join(f).replace(b"/", b" ").split()
    idx = np.array(corners, dtype=np.int64).reshape(len(f), 3, 2)
    bad = [
        ln
        for ln in lines
        if ln and not ln.startswith((b"v ", b"vt ", b"f ", b"#", b"mtllib ", b"o ", b"usemtl ", b"s "))
    ]
    return {
        "vertices": len(verts),
        "uvs": len(uvs),
        "faces": len(f),
        "verts": verts,
        "uv_range": (float(uvs.min()), float(uvs.max())) if len(uvs) else (0.0, 0.0),
        "index_ok": bool(
            len(f) == 0
            or (idx.min() >= 1 and idx[..., 0].max() <= len(verts) and idx[..., 1].max() <= len(uvs))
        ),
        "unknown_lines": len(bad),
        "bytes": len(data),
    }


def run(opts: Options) -> Section:
    from terrain_core.objmesh import _obj_reference_loop, write_obj

    n = 64 if opts.smoke else 512
    sec = Section(
        "obj_export",
        target=f"write_obj >= {TARGET:.0f}x faster than the original-style per-vertex writer at {n}x{n}; "
        "file parses back with the right counts",
        ratio_label="speedup (baseline / ours)",
    )
    h = height_field(n)
    cell = 30.0
    with tempfile.TemporaryDirectory(prefix="bench-obj-") as tmp:
        ours_p, ref_p = Path(tmp) / "ours.obj", Path(tmp) / "ref.obj"
        times = interleaved(
            {
                "ours": lambda: write_obj(ours_p, h, cell),
                "baseline": lambda: _obj_reference_loop(ref_p, h, cell),
            },
            repeats=opts.reps(5, 3),
            warmup=1,
        )
        parsed = parse_obj(ours_p)
        ref_bytes = ref_p.stat().st_size
    want_f = 2 * (n - 1) ** 2
    # up axis y: the second coordinate is the height; ours writes 4 decimals
    h_err = float(np.abs(parsed["verts"][:, 1] - h.ravel()).max()) if parsed["vertices"] == n * n else None
    counts_ok = (
        parsed["vertices"] == n * n
        and parsed["uvs"] == n * n
        and parsed["faces"] == want_f
        and parsed["index_ok"]
        and parsed["unknown_lines"] == 0
        and h_err is not None
        and h_err <= 6e-5
    )
    speedup = paired_ratio(times["baseline"], times["ours"])
    sec.ratio = speedup
    sec.status = verdict(speedup >= TARGET and counts_ok)
    sec.rows = [
        {
            "writer": "ours (write_obj)",
            "size": n,
            "median_s": median(times["ours"]),
            "MB": parsed["bytes"] / 1e6,
            "speedup": speedup,
        },
        {
            "writer": "original-style loop",
            "size": n,
            "median_s": median(times["baseline"]),
            "MB": ref_bytes / 1e6,
            "speedup": 1.0,
        },
    ]
    sec.notes.append(
        f"parsed back: {parsed['vertices']} v (want {n * n}), {parsed['uvs']} vt (want {n * n}), "
        f"{parsed['faces']} f (want {want_f}), indices in range: {parsed['index_ok']}, "
        f"max |height - written| = {h_err if h_err is None else f'{h_err:.1e}'} m, "
        f"uv range {parsed['uv_range'][0]:.4f}..{parsed['uv_range'][1]:.4f}, "
        f"unrecognised lines: {parsed['unknown_lines']} -> {'OK' if counts_ok else 'WRONG'}"
    )
    sec.checks = {"counts_ok": counts_ok, "max_height_error_m": h_err}
    return sec
