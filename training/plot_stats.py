"""Loss curves of a run as one PNG, drawn with Pillow (no matplotlib needed).

``python -m training.plot_stats RUN_DIR [--out curves.png] [--smooth 5]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

PANELS = (
    ("discriminator hinge loss", ("d_total", "d_real", "d_fake", "d_fake_flip"), False),
    ("generator adversarial loss", ("g_adv", "g_adv_flip"), False),
    ("reconstruction-type terms", ("fm", "perc_rgb", "perc_h", "l1"), False),
    ("D:G ratio (D steps per G step, window)", ("dg_ratio",), True),
)
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def read_stats(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _series(rows: list[dict], key: str, smooth: int) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        (r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = (np.array(v, np.float64) for v in zip(*pts, strict=True))
    if smooth > 1 and len(y) >= smooth:
        y = np.convolve(np.pad(y, (smooth - 1, 0), mode="edge"), np.ones(smooth) / smooth, mode="valid")
    return x, y


def plot(rows: list[dict], out: Path, smooth: int = 5, title: str = "") -> Path:
    """The loss panels of a run's stats rows as one PNG."""
    panels = []
    for name, keys, log in PANELS:
        series = {k: _series(rows, k, smooth) for k in keys}
        panels.append((name, {k: v for k, v in series.items() if v[0].size}, log))
    return plot_panels(panels, out, title)


def plot_panels(
    panels: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], bool]], out: Path, title: str = ""
) -> Path:
    """Line panels, two per row: (title, {label: (x, y)}, log_y) each."""
    from PIL import Image, ImageDraw

    pw, ph, margin = 560, 230, 56
    rows_n = (len(panels) + 1) // 2
    img = Image.new("RGB", (2 * pw, rows_n * ph + 30), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), title, fill="black")
    for i, (name, data, log) in enumerate(panels):
        ox, oy = (i % 2) * pw, 30 + (i // 2) * ph
        x0, y0, x1, y1 = ox + margin, oy + 22, ox + pw - 12, oy + ph - 28
        draw.text((ox + margin, oy + 4), name, fill="black")
        series = [(k, np.asarray(x, np.float64), np.asarray(y, np.float64)) for k, (x, y) in data.items()]
        series = [s for s in series if s[1].size]
        draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
        if not series:
            draw.text((x0 + 10, y0 + 10), "(not logged in this run)", fill=(120, 120, 120))
            continue
        xs = np.concatenate([s[1] for s in series])
        ys = np.concatenate([s[2] for s in series])
        if log:
            ys = np.log10(np.clip(ys, 1e-3, None))
        lo_x, hi_x = float(xs.min()), float(max(xs.max(), xs.min() + 1))
        lo_y, hi_y = float(np.percentile(ys, 1)), float(np.percentile(ys, 99))
        if hi_y - lo_y < 1e-9:
            lo_y, hi_y = lo_y - 0.5, hi_y + 0.5
        pad = 0.05 * (hi_y - lo_y)
        lo_y, hi_y = lo_y - pad, hi_y + pad

        def px(x, y, lo_x=lo_x, hi_x=hi_x, lo_y=lo_y, hi_y=hi_y, x0=x0, x1=x1, y0=y0, y1=y1):
            return (
                x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0),
                y1 - (np.clip(y, lo_y, hi_y) - lo_y) / (hi_y - lo_y) * (y1 - y0),
            )

        for t in np.linspace(lo_y, hi_y, 5):
            _, yy = px(lo_x, t)
            draw.line((x0, yy, x1, yy), fill=(235, 235, 235))
            label = f"{10**t:.3g}" if log else f"{t:.3g}"
            draw.text((ox + 4, yy - 6), label, fill=(90, 90, 90))
        for t in np.linspace(lo_x, hi_x, 5):
            xx, _ = px(t, lo_y)
            draw.text((xx - 10, y1 + 4), f"{int(t)}", fill=(90, 90, 90))
        for j, (key, x, y) in enumerate(series):
            yv = np.log10(np.clip(y, 1e-3, None)) if log else y
            pts = [px(a, b) for a, b in zip(x, yv, strict=True)]
            colour = COLOURS[j % len(COLOURS)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for p in pts if len(pts) < 12 else ():
                draw.ellipse((p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3), fill=colour)
            draw.text((x1 - 150, y0 + 4 + 12 * j), key, fill=colour)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.plot_stats", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (or its stats.jsonl)")
    p.add_argument("--out", default=None, help="PNG path (default RUN/curves.png)")
    p.add_argument("--smooth", type=int, default=5, help="moving-average window in log rows")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    run = Path(a.run)
    stats = run if run.suffix == ".jsonl" else run / "stats.jsonl"
    if not stats.is_file():
        print(f"error: no stats at {stats}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else stats.parent / "curves.png"
    print(plot(read_stats(stats), out, a.smooth, a.title or str(stats.parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
