"""The three layers import only downwards (DESIGN.md), checked by scanning every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages of ours it must never import
FORBIDDEN = {
    "terrain_core": {"training", "blender_addon", "bench"},
    "training": {"blender_addon", "bench"},
    "blender_addon": {"training", "bench"},
}
# modules of terrain_core that may import torch at module level (everything else imports it lazily)
TORCH_AT_TOP_OK = ("terrain_core/nn/",)


def _top_level_imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top))
    return out


def test_packages_import_only_downwards():
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        for f in (ROOT / pkg).rglob("*.py"):
            for mod, _ in _top_level_imports(f):
                if mod.split(".")[0] in forbidden:
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_terrain_core_imports_torch_and_bpy_lazily():
    bad = []
    for f in (ROOT / "terrain_core").rglob("*.py"):
        rel = f.relative_to(ROOT).as_posix()
        for mod, at_top in _top_level_imports(f):
            root = mod.split(".")[0]
            if root == "bpy":
                bad.append(f"{rel} imports bpy")
            if root == "torch" and at_top and not rel.startswith(TORCH_AT_TOP_OK):
                bad.append(f"{rel} imports torch at module level")
    assert not bad, bad


def test_terrain_core_imports_in_a_python_without_torch_bpy_pillow_scipy():
    # What Blender's own Python has: numpy. Block the rest and import the inference-facing package.
    code = (
        "import sys\n"
        "for m in ('torch', 'bpy', 'PIL', 'scipy', 'training', 'sklearn'):\n"
        "    sys.modules[m] = None\n"
        "import terrain_core, terrain_core.labels, terrain_core.config\n"
        "import terrain_core.noise, terrain_core.result\n"
        "import terrain_core.erosion, terrain_core.flow, terrain_core.flow_metrics\n"
        "import importlib.util\n"
        "for m in ('terrain_core.runtime', 'terrain_core.exporters', 'terrain_core.imageio'):\n"
        "    if importlib.util.find_spec(m) is not None:\n"
        "        importlib.import_module(m)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
