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
        # Imported outright: a module that went missing must fail here, not be skipped.
        "import terrain_core.model_format, terrain_core.runtime\n"
        "import terrain_core.outputs, terrain_core.imageio\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ---------------------------------------------------------------------------------------- import cycles

PROJECT_PACKAGES = ("terrain_core", "training", "blender_addon", "bench")
# Calls of importlib.import_module / __import__ whose argument is not a module name the graph can read,
# each with why it cannot close a circle. A new one fails test_no_import_cycles until it is listed here.
DYNAMIC_IMPORTS_OK = {
    # the benchmark sections named in MODULES; bench/__main__ is the entry point, no section imports it
    ("bench/__main__.py", "MODULES[name]"),
    # probes third-party packages (torch, onnxruntime, ...) for the report, none of ours
    ("bench/common.py", "mod"),
}


def _project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project (packages as their __init__)."""
    mods = {p.stem: p for p in ROOT.glob("*.py")}
    for pkg in PROJECT_PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            if "__pycache__" in p.parts:
                continue
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES


def _import_graph(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> modules it imports, problems): every import statement, at module level or inside a
    function, plus importlib.import_module / __import__ calls with a literal name or ``<expr> + ".a.b"``
    (read as a submodule of the calling file's top package).
    Problems: an import of one of our modules that names no file, and dynamic imports the graph cannot
    read that are not in DYNAMIC_IMPORTS_OK."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    problems: list[str] = []
    for cur, path in mods.items():
        rel = path.relative_to(ROOT).as_posix()
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))

        def add(target: str, names: tuple[str, ...] = (), *, rel=rel, cur=cur, node=None) -> None:
            if not _is_ours(target):
                return
            if target not in mods:
                problems.append(f"{rel}:{node.lineno}: imports {target}, which is no module of the project")
                return
            # ``from pkg import sub`` imports the submodule when there is one, else a name of pkg
            found = {f"{target}.{n}" for n in names if f"{target}.{n}" in mods} or {target}
            for t in found:
                # A package's own __init__ importing its children is not a circle: importing any child
                # runs the package's __init__ first anyway.
                if t != cur and not t.startswith(cur + "."):
                    graph[cur].add(t)

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(a.name, node=node)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = cur.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                add(target, tuple(a.name for a in node.names), node=node)
            elif isinstance(node, ast.Call) and node.args:
                fn = node.func
                if getattr(fn, "attr", getattr(fn, "id", None)) not in ("import_module", "__import__"):
                    continue
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    add(arg.value, node=node)
                elif (
                    isinstance(arg, ast.BinOp)
                    and isinstance(arg.op, ast.Add)
                    and isinstance(arg.right, ast.Constant)
                    and str(arg.right.value).startswith(".")
                ):
                    add(cur.split(".")[0] + arg.right.value, node=node)
                elif (rel, ast.unparse(arg)) not in DYNAMIC_IMPORTS_OK:
                    problems.append(f"{rel}:{node.lineno}: dynamic import of {ast.unparse(arg)} (unreadable)")
    return graph, problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph, problems = _import_graph(_project_modules())
    assert not problems, problems
    cycles = _cycles(graph)
    assert not cycles, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_sees_lazy_and_importlib_edges():
    # The finder itself must see a circle closed by a function-level import and by an importlib string,
    # else test_no_import_cycles would pass on the very circles this file exists to catch.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    graph, _ = _import_graph(_project_modules())
    # the batch launcher reaches the add-on with a relative import (its __package__ set by hand)
    assert "blender_addon.blender.batch_run" in graph["blender_addon.batch"]
    # panel.py imports live only inside its draw function
    assert "blender_addon.blender.live" in graph["blender_addon.blender.panel"]
