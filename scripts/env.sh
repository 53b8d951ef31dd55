#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) idempotently.
# Everything the two README commands need is installed here; nothing outside .venv is touched.
# torch is pinned to 2.13.0 (a CPU build this kind of machine has on disk); numpy<2 because bpy 5.0.1
# requires it and onnxruntime would otherwise pull numpy 2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
stamp="$venv/.installed"
want="$(cat "$root/pyproject.toml" "$root/scripts/env.sh" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$root/.cache/addon-wheels" ]; then
  exit 0
fi
echo "[env] setting up $venv (first run takes a few minutes: torch, bpy, onnxruntime)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q "numpy>=1.26,<2" "torch==2.13.0" >&2
"$venv/bin/python" -m pip install -q -e "$root[torch,bpy,dev]" "numpy>=1.26,<2" "torch==2.13.0" >&2
# The extension zip bundles ONNX Runtime wheels for Blender's Python; fetch them now (install time) so
# that building and testing the zip later never downloads.
"$venv/bin/python" "$root/build_addon.py" --fetch-wheels-only >&2
echo "$want" > "$stamp"
echo "[env] ready" >&2
