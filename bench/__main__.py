"""``python -m bench [--quick] [--smoke] [--json FILE] [--only NAME,...] [--threads N]``."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from bench import MODULES, SECTIONS
from bench.common import ERROR, Options, Section, machine_info, table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Speed and memory of terrain-gan against peers and baselines, measured in one run.",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (minutes)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 2 repeats: checks that it works (seconds)"
    )
    p.add_argument("--json", metavar="FILE", help="write all results to this JSON file")
    p.add_argument("--only", metavar="NAME,...", help=f"sections to run (default all): {','.join(SECTIONS)}")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and ONNX Runtime (default 1: the machine is shared)",
    )
    p.add_argument("--repeats", type=int, default=None, help="override every section's repeat count")
    p.add_argument(
        "--export-all", action="store_true", help="generator_efficiency: export every preset to ONNX (slow)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failing sections")
    return p


def _options(args: argparse.Namespace) -> Options:
    return Options(
        quick=args.quick or args.smoke,
        smoke=args.smoke,
        threads=args.threads,
        repeats=args.repeats,
        export_all=args.export_all,
        verbose=args.verbose,
    )


def _section_names(only: str | None) -> list[str]:
    """The sections to run; ValueError naming the unknown ones."""
    if not only:
        return list(SECTIONS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return names


def _run_section(name: str, opts: Options) -> dict:
    """Run one section and print its table; a section that raises is reported, not fatal."""
    t0 = time.perf_counter()
    print(f"\n== {name}", flush=True)
    try:
        sec: Section = importlib.import_module(MODULES[name]).run(opts)
    except Exception as e:  # noqa: BLE001  (one broken section must not hide the others' figures)
        sec = Section(name, target="-", status=ERROR, error=f"{type(e).__name__}: {e}")
        if opts.verbose:
            traceback.print_exc()
    sec.seconds = time.perf_counter() - t0
    print(f"target: {sec.target}")
    print(table(sec.rows))
    for note in sec.notes:
        print(f"  note: {note}")
    if sec.error:
        print(f"  error: {sec.error}")
    ratio = "" if sec.ratio is None else f"  {sec.ratio_label} = {sec.ratio:.3g}"
    print(f"-> {sec.status}{ratio}  ({sec.seconds:.0f} s)", flush=True)
    return sec.to_json()


def _print_summary(results: dict[str, dict]) -> None:
    print("\n== summary")
    keys = {"status": "status", "ratio": "ratio", "measure": "ratio_label", "seconds": "seconds"}
    print(table([{"section": n, **{k: r[v] for k, v in keys.items()}} for n, r in results.items()]))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = _section_names(args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    # Before torch is imported anywhere: threads of this process and of every child it starts.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    opts = _options(args)
    started = _dt.datetime.now(_dt.UTC)
    machine = machine_info()  # before the run: its load average is the starting one
    mode = "smoke" if opts.smoke else "quick" if opts.quick else "full"
    print(f"terrain-gan benchmark ({mode}, {args.threads} thread(s)): {', '.join(names)}", flush=True)
    results = {name: _run_section(name, opts) for name in names}
    _print_summary(results)
    if args.json:
        doc = {
            "started": started.isoformat(timespec="seconds"),
            "mode": mode,
            "threads": args.threads,
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine,
            "sections": results,
        }
        from terrain_core.output_set import write_text_atomic  # after OMP_NUM_THREADS: it loads numpy

        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(doc, indent=2, default=float))
        print(f"\nwrote {out}")
    return 1 if any(r["status"] == ERROR for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
