"""Build the Blender extension zip(s): the add-on, the inference part of terrain_core, the default model,
and ONNX Runtime with the packages it imports, as wheels for each target platform.

    python build_addon.py                                  # dist/terrain_gan-<version>-linux_x64.zip
    python build_addon.py --platform windows-x64 --platform macos-arm64
    python build_addon.py --fetch-wheels-only              # fill the wheel cache (needs the network)

What goes in
- ``blender_addon/`` as the extension's root package (its ``blender_manifest.toml`` gets ``platforms`` and
  ``wheels`` filled in per platform).
- ``terrain_core`` as a small pure-Python wheel (``terrain_gan_core``): labels, config, noise, result,
  model_format, runtime, tiling, model_export, argtypes, outputs, objmesh, rasterfiles, imageio,
  output_set, exits, erosion, flow, flow_metrics and ``models/`` with the default ``.onnx`` model. No
  training code. Erosion is numpy only, so every platform's zip erodes with nothing more.
  ``terrain_core/nn`` (the torch network) is left out unless ``--with-torch-runtime``: inside Blender the
  PyTorch runtime also needs a torch the user installed into Blender's Python, which this build never ships.
- ONNX Runtime for the platform and its import-time dependencies (flatbuffers, packaging, protobuf), at the
  versions installed in this environment, downloaded with ``pip download --only-binary=:all: --no-deps
  --python-version 3.11`` (Blender 4.2-5.0 ship Python 3.11) into a cache, so a second build is offline.
  numpy comes with Blender.
- The default model: ``terrain_core/models/default.onnx`` when the project ships one, else ``--model``,
  else a stand-in exported once from the untrained ``small`` preset (cached beside the wheels; it makes
  noise-like terrain, and the add-on says so).

Checks: Blender's own extension tool (``blender_ext.py`` inside the bpy wheel) validates the staged folder
and builds the zip; then every wheel the manifest lists must be in the zip and carry a tag for the platform.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_DIR = ROOT / "blender_addon"
CORE_DIR = ROOT / "terrain_core"
DEFAULT_WHEELS_DIR = ROOT / ".cache" / "addon-wheels"
PYTHON_VERSION = "3.11"  # Blender 4.2 LTS to 5.0
WHEEL_DIST = "terrain_gan_core"
CORE_MODULES = (
    "__init__",
    "labels",
    "config",
    "noise",
    "result",
    "model_format",
    "runtime",
    "tiling",
    "model_export",
    "argtypes",
    "outputs",
    "objmesh",
    "rasterfiles",
    "imageio",
    "output_set",
    "exits",
    "erosion",
    "flow",
    "flow_metrics",
)
STANDIN_NAME = "standin-untrained-small.onnx"

# pip platform tags per Blender platform (newest first); "any" wheels fit every platform.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": (
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ),
    "linux-arm64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "windows-x64": ("win_amd64",),
    "windows-arm64": ("win_arm64",),
    "macos-arm64": tuple(f"macosx_{v}_0_arm64" for v in (15, 14, 13, 12, 11)) + ("macosx_11_0_universal2",),
    "macos-x64": tuple(f"macosx_{v}_0_x86_64" for v in (14, 13, 12, 11))
    + ("macosx_10_15_x86_64", "macosx_11_0_universal2"),
}
# What onnxruntime imports (checked by importing it in a clean environment: numpy aside, these four).
RUNTIME_PACKAGES = ("onnxruntime", "flatbuffers", "packaging", "protobuf")


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[build_addon] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- wheels


def pinned_requirements() -> list[str]:
    """The runtime packages at the versions installed here (what the tests ran against)."""
    reqs = []
    for name in RUNTIME_PACKAGES:
        try:
            reqs.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(
                f"{name} is not installed in this environment; run scripts/env.sh first"
            ) from None
    return reqs


def wheel_tags(filename: str) -> tuple[str, str, str, str, str]:
    """(name, version, python, abi, platform) of a wheel file name."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise BuildError(f"{filename}: not a wheel file name")
    return parts[0], parts[1], parts[-3], parts[-2], parts[-1]


def platform_tag_fits(tag: str, platform: str) -> bool:
    """True if one wheel platform tag runs on the Blender platform (as pip's tag expansion would accept:
    older manylinux glibc levels, older macOS versions, universal2 on either Mac)."""
    if tag == "any":
        return True
    os_name, _, arch = platform.partition("-")
    if os_name == "linux":
        machine = {"x64": "x86_64", "arm64": "aarch64"}[arch]
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_" + machine, tag)
        if m:
            return (int(m.group(1)), int(m.group(2))) <= (2, 28)  # Blender 4.2+ needs glibc 2.28 itself
        return tag in (f"manylinux1_{machine}", f"manylinux2010_{machine}", f"manylinux2014_{machine}")
    if os_name == "windows":
        return tag == {"x64": "win_amd64", "arm64": "win_arm64"}[arch]
    if os_name == "macos":
        m = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", tag)
        if not m:
            return False
        archs = {"x64": ("x86_64", "intel", "universal2", "universal"), "arm64": ("arm64", "universal2")}[
            arch
        ]
        return m.group(3) in archs and int(m.group(1)) <= 15
    return False


def wheel_fits(filename: str, platform: str) -> bool:
    """True if the wheel runs on CPython 3.11 on the Blender platform."""
    _, _, py, abi, plat = wheel_tags(filename)
    if not any(platform_tag_fits(t, platform) for t in plat.split(".")):
        return False
    pys = set(py.split("."))
    if not pys & {"py3", "py2.py3", "cp311", "cp310", "cp39", "cp38", "cp37", "cp36"} and "py2" not in pys:
        return False
    abis = set(abi.split("."))
    # cpXY-cpXY wheels are for that exact Python; abi3 from an older CPython works on 3.11.
    if "cp311" in abis or "none" in abis:
        return True
    return "abi3" in abis


def cached_wheel(wheels_dir: Path, req: str, platform: str) -> Path | None:
    name, version = req.split("==")
    norm = re.sub(r"[-_.]+", "_", name).lower()
    for p in sorted(wheels_dir.glob("*.whl")):
        n, v, *_ = wheel_tags(p.name)
        if re.sub(r"[-_.]+", "_", n).lower() == norm and v == version and wheel_fits(p.name, platform):
            return p
    return None


def fetch_wheels(wheels_dir: Path, platform: str, *, offline: bool) -> list[Path]:
    """Runtime wheels for ``platform`` from the cache, downloading what is missing (unless offline)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for req in pinned_requirements():
        whl = cached_wheel(wheels_dir, req, platform)
        if whl is None:
            if offline:
                raise BuildError(
                    f"no cached wheel for {req} on {platform} in {wheels_dir}; "
                    f"run `python build_addon.py --fetch-wheels-only --platform {platform}` "
                    "with network access"
                )
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--no-deps",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
                "--abi",
                "none",
                *[a for tag in (*PLATFORM_TAGS[platform], "any") for a in ("--platform", tag)],
                "--dest",
                str(wheels_dir),
                "--disable-pip-version-check",
                "--quiet",
                req,
            ]
            log(f"downloading {req} for {platform}")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(f"pip could not download {req} for {platform}:\n{r.stderr.strip()[-2000:]}")
            whl = cached_wheel(wheels_dir, req, platform)
            if whl is None:
                raise BuildError(f"pip downloaded {req} but no wheel for {platform} is in {wheels_dir}")
        out.append(whl)
    return out


# ------------------------------------------------------------------------------------------- model


def default_model(model: str | None, wheels_dir: Path, *, allow_export: bool = True) -> tuple[Path, bool]:
    """(model file, is_standin). The shipped default, else --model, else the cached untrained stand-in."""
    if model:
        p = Path(model)
        if p.suffix != ".onnx" or not p.is_file():
            raise BuildError(
                f"--model must be an existing .onnx file (the add-on runs ONNX Runtime), got {p}"
            )
        return p, False
    shipped = CORE_DIR / "models" / "default.onnx"
    if shipped.is_file() and shipped.stat().st_size > 0:
        return shipped, False
    standin = wheels_dir / STANDIN_NAME
    if not standin.is_file():
        if not allow_export:
            raise BuildError(
                f"no default model and no cached stand-in {standin}; run --fetch-wheels-only first"
            )
        export_standin(standin)
    return standin, True


def export_standin(path: Path) -> None:
    """Export the untrained 'small' preset (seed 0) to ONNX once (needs torch; ~1-2 min on 2 cores)."""
    log(f"no trained default model in terrain_core/models: exporting the untrained stand-in to {path}")
    sys.path.insert(0, str(ROOT))
    import torch

    from terrain_core.config import ShadowConfig, preset
    from terrain_core.model_export import export_model
    from terrain_core.nn.inference import InferenceNet

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = InferenceNet(preset("small"), ShadowConfig())
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        st, onnx_path = export_model(
            net,
            Path(tmp) / "standin",
            metadata={
                "name": "untrained-small",
                "provenance": {"untrained": True, "preset": "small", "init_seed": 0},
            },
        )
        os.replace(onnx_path, path)


# ------------------------------------------------------------------------------------------- core wheel


def core_version() -> str:
    text = (CORE_DIR / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise BuildError("terrain_core/__init__.py has no __version__")
    return m.group(1)


def build_core_wheel(dest: Path, model: Path, *, with_nn: bool) -> Path:
    """A py3-none-any wheel of terrain_core's inference modules + models/default.onnx (+ nn/ if asked)."""
    version = core_version()
    files: dict[str, bytes] = {}
    for name in CORE_MODULES:
        files[f"terrain_core/{name}.py"] = (CORE_DIR / f"{name}.py").read_bytes()
    if with_nn:
        for p in sorted((CORE_DIR / "nn").glob("*.py")):
            files[f"terrain_core/nn/{p.name}"] = p.read_bytes()
    readme = CORE_DIR / "models" / "README.md"
    if readme.is_file():
        files["terrain_core/models/README.md"] = readme.read_bytes()
    files["terrain_core/models/default.onnx"] = model.read_bytes()
    dist_info = f"{WHEEL_DIST}-{version}.dist-info"
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {WHEEL_DIST}\nVersion: {version}\n"
        "Summary: terrain_core inference modules bundled with the Terrain GAN Blender extension\n"
        "License: GPL-3.0-or-later\nRequires-Python: >=3.11\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: build_addon.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/top_level.txt"] = b"terrain_core\n"
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / f"{WHEEL_DIST}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return path


# ------------------------------------------------------------------------------------------- staging


def blender_ext_cli() -> Path:
    """Blender's extension tool as shipped inside the bpy wheel (found without importing bpy)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise BuildError("the bpy module is needed for Blender's extension tool (pip install bpy==5.0.1)")
    base = Path(spec.origin).resolve().parent
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"Blender's extension CLI (blender_ext.py) not found under {base}")
    return found[-1]


def run_cli(cli: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{out[-3000:]}")
    return out


def manifest_for(platform: str, wheel_names: list[str]) -> str:
    text = (ADDON_DIR / "blender_manifest.toml").read_text()
    text = re.sub(r'^version = "[^"]*"', f'version = "{core_version()}"', text, count=1, flags=re.M)
    wheels = ",\n".join(f'  "./wheels/{n}"' for n in wheel_names)
    extra = f'\nplatforms = ["{platform}"]\n\nwheels = [\n{wheels},\n]\n'
    head, sep, tail = text.partition("\n[permissions]")
    return head.rstrip() + "\n" + extra + sep + tail


def stage(stage_dir: Path, platform: str, wheels: list[Path], core_wheel: Path) -> None:
    shutil.copytree(
        ADDON_DIR,
        stage_dir,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "blender_manifest.toml"),
    )
    (stage_dir / "wheels").mkdir()
    names = []
    for w in [*wheels, core_wheel]:
        shutil.copy2(w, stage_dir / "wheels" / w.name)
        names.append(w.name)
    (stage_dir / "blender_manifest.toml").write_text(manifest_for(platform, names))


def verify_zip(zip_path: Path, platform: str) -> list[str]:
    """Every wheel the manifest lists is in the zip and fits the platform; returns the wheel names."""
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = z.read("blender_manifest.toml").decode()
    listed = re.findall(r'"\./wheels/([^"]+\.whl)"', manifest)
    if not listed:
        raise BuildError(f"{zip_path}: the manifest lists no wheels")
    for w in listed:
        if f"wheels/{w}" not in names:
            raise BuildError(f"{zip_path}: the manifest lists wheels/{w} but the zip does not contain it")
        if not wheel_fits(w, platform):
            raise BuildError(f"{zip_path}: wheel {w} does not fit platform {platform}")
    if f'platforms = ["{platform}"]' not in manifest:
        raise BuildError(f"{zip_path}: manifest platforms is not [{platform!r}]")
    for needed in ("__init__.py", "batch.py", "core/pipeline.py", "blender/generate.py"):
        if needed not in names:
            raise BuildError(f"{zip_path}: {needed} missing")
    return listed


def build(
    platforms: list[str], out_dir: Path, wheels_dir: Path, *, model: str | None, offline: bool, with_nn: bool
) -> list[Path]:
    cli = blender_ext_cli()
    model_path, standin = default_model(model, wheels_dir, allow_export=not offline)
    if standin:
        log("WARNING: bundling the UNTRAINED stand-in model (no terrain_core/models/default.onnx yet)")
    out_dir.mkdir(parents=True, exist_ok=True)
    zips = []
    for platform in platforms:
        wheels = fetch_wheels(wheels_dir, platform, offline=offline)
        with tempfile.TemporaryDirectory(prefix="terrain-addon-") as tmp:
            tmp = Path(tmp)
            core_wheel = build_core_wheel(tmp, model_path, with_nn=with_nn)
            stage_dir = tmp / "terrain_gan"
            stage(stage_dir, platform, wheels, core_wheel)
            run_cli(cli, "validate", str(stage_dir))
            zip_path = out_dir / f"terrain_gan-{core_version()}-{platform.replace('-', '_')}.zip"
            zip_path.unlink(missing_ok=True)
            run_cli(cli, "build", "--source-dir", str(stage_dir), "--output-filepath", str(zip_path))
        listed = verify_zip(zip_path, platform)
        size = zip_path.stat().st_size
        log(f"{zip_path} ({size / 2**20:.1f} MiB) for {platform}: wheels {', '.join(listed)}")
        zips.append(zip_path)
    return zips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the Terrain GAN Blender extension zip(s).")
    p.add_argument(
        "--platform", action="append", choices=sorted(PLATFORM_TAGS), help="repeatable; default linux-x64"
    )
    p.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default dist/)")
    p.add_argument(
        "--wheels-dir", default=str(DEFAULT_WHEELS_DIR), help="wheel cache (default .cache/addon-wheels)"
    )
    p.add_argument(
        "--model",
        default=None,
        help="default .onnx model to bundle (default: terrain_core/models/default.onnx)",
    )
    p.add_argument("--offline", action="store_true", help="never download: fail if a wheel is not cached")
    p.add_argument(
        "--with-torch-runtime", action="store_true", help="also bundle terrain_core/nn (torch not included)"
    )
    p.add_argument(
        "--fetch-wheels-only",
        action="store_true",
        help="fill the wheel cache (and the stand-in model) and stop",
    )
    ns = p.parse_args(argv)
    platforms = ns.platform or ["linux-x64"]
    wheels_dir = Path(ns.wheels_dir)
    try:
        if ns.fetch_wheels_only:
            for platform in platforms:
                for w in fetch_wheels(wheels_dir, platform, offline=False):
                    log(f"cached {w.name}")
            model_path, standin = default_model(ns.model, wheels_dir)
            log(f"default model: {model_path}{' (untrained stand-in)' if standin else ''}")
            return 0
        build(
            platforms,
            Path(ns.out),
            wheels_dir,
            model=ns.model,
            offline=ns.offline,
            with_nn=ns.with_torch_runtime,
        )
    except BuildError as e:
        print(f"build_addon.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
