"""Headless batch: class map images in, terrain files (and preview renders) out.

    blender -b --python blender_addon/batch.py -- --input maps/ --out out/ [options]
    python blender_addon/batch.py -- --input maps/ --out out/ [options]        (with the bpy module)

For every map and seed: generate, build the terrain object, write the chosen formats into
OUT/<map name>/seed_<seed>/, optionally render a Cycles CPU preview, and record what happened in
OUT/summary.json. Each map and seed's files appear all at once or not at all (an earlier run's files stay
as they were when a re-run fails); one batch at a time writes into OUT. A map that fails is reported and
the others continue. Exit status: 0 all done; 1 some maps failed; 2 bad arguments, an unusable --out, no
maps or an unsupported Blender (one line on stderr, nothing written); 130/143 interrupted/terminated.

This file is only the launcher: the batch is ``blender/batch_run.py`` of the add-on package it lies in.
"""

import sys
from pathlib import Path

if not __package__:
    # Run as a script: import the package this file lies in by its folder name (``blender_addon`` in the
    # source tree, the extension's id when installed) with its parent folder on sys.path, then import
    # relative to it (PEP 366). In the source tree terrain_core lies in that parent folder too.
    _pkg_dir = Path(__file__).resolve().parent
    if str(_pkg_dir.parent) not in sys.path:
        sys.path.insert(0, str(_pkg_dir.parent))
    __package__ = _pkg_dir.name

import bpy  # noqa: E402

from .core.batch_options import check_blender  # noqa: E402  (pure Python: imports on any Blender)

if __name__ == "__main__":
    if why := check_blender(bpy.app.version):  # before the add-on's modules, which need 4.2+
        print(f"batch.py: error: {why}", file=sys.stderr)
        sys.exit(2)
    from .blender.batch_run import exit_process, main

    exit_process(main())
