#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then generate terrain for every map in examples/
# headless (the add-on's batch script with the bpy module) into out/demo/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
exec .venv/bin/python blender_addon/batch.py -- --input examples --out out/demo --formats blend,obj,glb,png,exr --render --show-map --contact-sheet "$@"
