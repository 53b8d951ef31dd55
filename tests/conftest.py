"""Shared test set-up: Blender and caches write into a temporary folder, never into $HOME."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_tmp = Path(tempfile.mkdtemp(prefix="terrain-tests-"))
for var, sub in (
    ("BLENDER_USER_RESOURCES", "blender-user"),
    ("BLENDER_USER_CONFIG", "blender-user/config"),
    ("BLENDER_USER_SCRIPTS", "blender-user/scripts"),
    ("XDG_CACHE_HOME", "cache"),
    ("MESA_SHADER_CACHE_DIR", "mesa"),
    ("TORCH_HOME", "torch"),
):
    os.environ.setdefault(var, str(_tmp / sub))
    Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
# Two cores here: keep torch from oversubscribing when tests run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "2")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
