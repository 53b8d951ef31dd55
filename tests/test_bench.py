"""Smoke test of the benchmark CLI: it runs, writes JSON with the documented keys, ratios are positive.

The benchmark itself is not run by the test suite (minutes of CPU); --smoke runs a section at tiny sizes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench.common import ROOT, Section, interleaved, paired_ratio, table


def _smoke(section: str, tmp_path) -> tuple[dict, str]:
    """``python -m bench --smoke --only SECTION --json FILE``: the JSON document and what it printed
    (exit 0 asserted)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", section, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(out.read_text()), proc.stdout


def test_smoke_obj_export(tmp_path):
    doc, stdout = _smoke("obj_export", tmp_path)
    assert {"started", "mode", "threads", "machine", "sections", "command"} <= set(doc)
    assert doc["mode"] == "smoke" and doc["machine"]["numpy"]
    sec = doc["sections"]["obj_export"]
    assert {"name", "target", "status", "ratio", "ratio_label", "rows", "notes", "checks"} <= set(sec)
    assert sec["status"] in ("PASS", "MISS")
    assert isinstance(sec["ratio"], float) and math.isfinite(sec["ratio"]) and sec["ratio"] > 0
    # the written file was parsed back and had the right counts
    assert sec["checks"]["counts_ok"] is True
    assert all(r["median_s"] > 0 for r in sec["rows"])
    assert "obj_export" in stdout and sec["status"] in stdout


def test_unknown_section_is_a_clear_error():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown section" in proc.stderr and "obj_export" in proc.stderr


def test_interleaved_timing_and_paired_ratio():
    calls = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert len(t["a"]) == len(t["b"]) == 3 and calls.count("a") == calls.count("b") == 4
    assert calls[2:4] == ["a", "b"] and calls[4:6] == ["b", "a"]  # order rotates between rounds
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == 3.0


def test_section_json_and_table():
    s = Section("x", target="t", ratio=0.5, rows=[{"a": 1.0, "b": "z"}, {"a": 12345.0}])
    d = s.to_json()
    assert d["ratio"] == 0.5 and d["rows"][1]["a"] == 12345.0
    text = table(d["rows"])
    assert "12,345" in text and "z" in text and text.splitlines()[0].split() == ["a", "b"]


def test_smoke_erosion(tmp_path):
    sec = _smoke("erosion", tmp_path)[0]["sections"]["erosion"]
    assert sec["status"] in ("PASS", "MISS") and sec["ratio"] > 0
    assert sec["checks"]["huge_finite"] is True and sec["checks"]["huge_balance_error"] < 0.01
    assert sec["checks"]["peak_rss_bytes"] > 0 and sec["checks"]["scale_ratio"] > 0


def test_smoke_cli_large(tmp_path):
    sec = _smoke("cli_large", tmp_path)[0]["sections"]["cli_large"]
    (row,) = sec["rows"]
    assert row["size"] == 256 and row["written_MB"] > 0 and row["obj_vertices"] == 256 * 256
    assert 0 < row["peak_before_write_MiB"] <= row["peak_RSS_MiB"] and row["write_s"] > 0
    assert 0 < row["peak_writing_MiB"] <= row["peak_RSS_MiB"]
    assert sec["checks"]["256"]["rc"] == 0 and "height.tif" in sec["notes"][0]
