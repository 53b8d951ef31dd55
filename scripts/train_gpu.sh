#!/usr/bin/env bash
# One-shot training run for a short-lived GPU machine (about 10 minutes, nothing downloadable there):
# build the Earth set from carried downloads, continue the committed campaign state for a fixed wall-clock
# budget, export, evaluate, and write the model files, the new resume state and the report to $OUT.
#
#   OUT=/path/to/out bash scripts/train_gpu.sh                 # on the GPU machine
#   OUT=/tmp/dry TINY=1 bash scripts/train_gpu.sh              # CPU dry run (tests/test_train_gpu_script.py)
#
# Settings (environment): PYTHON (default: python3, the interpreter that has torch there), MINUTES
# (training wall clock, default 6), CONFIG (training preset, default gpu), SET (extra "key=value ..."
# overrides), COUNT / SIZE (Earth crops, default 2000 / 256), EVAL_MAPS (default 32), RESUME (a compact
# resume state; default training/resume/default-state.safetensors when present), TERRAIN_GAN_CACHE (where
# the Earth sources lie: carry .gpu-cache/ with downloads/ inside; see docs/TRAINING.md), TINY=1 (a
# procedural set and the tiny preset: minutes on a CPU, for checking the script itself).
# What it writes to $OUT: model.safetensors, model.onnx, resume_state.safetensors, evaluation.json,
# summary.json, stats.jsonl, samples.png, log.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${OUT:?set OUT to the folder that receives the results}"
py="${PYTHON:-python3}"
minutes="${MINUTES:-6}"
work="${WORK:-$(mktemp -d /tmp/terrain-gpu.XXXXXX)}"
mkdir -p "$OUT"
log="$OUT/log.txt"
exec > >(tee -a "$log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export TERRAIN_GAN_CACHE="${TERRAIN_GAN_CACHE:-$root/.gpu-cache}"
t0=$(date +%s)
stamp() { echo "[train_gpu +$(( $(date +%s) - t0 ))s] $*"; }

stamp "python: $("$py" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
if [ "${TINY:-0}" = 1 ]; then
  size="${SIZE:-64}"
  source_args=(--source procedural --count "${COUNT:-16}" --size "$size")
  config="${CONFIG:-tiny}"
  extra=(--set crop=64 --set workers=0 --set sample_count=2 --set log_every=1 --set export_onnx=false
         --set slope_stats_weight=1 --set detail_stats_weight=1 --set diversity_weight=5)
else
  size="${SIZE:-256}"
  source_args=(--source earth --count "${COUNT:-2000}" --size "$size")
  config="${CONFIG:-gpu}"  # small model, 256 px crops, batch 128, bf16, the relief terms (presets/gpu.toml)
  extra=()
fi

stamp "building the data set (${source_args[*]})"
"$py" -m training.build_dataset "${source_args[@]}" --seed 0 --out "$work/data" --quiet

resume="${RESUME:-training/resume/default-state.safetensors}"
resume_args=()
if [ -f "$resume" ] && [ "${TINY:-0}" != 1 ]; then
  resume_args=(--resume-from "$resume")
fi
sets=()
for kv in ${SET:-}; do sets+=(--set "$kv"); done
stamp "training $config for $minutes min ${resume_args[*]}"
"$py" -m training.train --config "$config" --data "$work/data" --out "$work/run" \
  --max-minutes "$minutes" "${extra[@]}" "${resume_args[@]}" "${sets[@]}"

stamp "exporting (safetensors + onnx)"
"$py" -m training.train --out "$work/run" --data "$work/data" --export-only --set export_onnx=true
stamp "evaluating"
"$py" -m training.evaluate --model "$work/run/export/model.onnx" --data "$work/data" --split val \
  --max-maps "${EVAL_MAPS:-32}" --size "$size" --out "$OUT/evaluation.json"

cp "$work/run/export/model.safetensors" "$work/run/export/model.onnx" "$work/run/resume_state.safetensors" \
   "$work/run/summary.json" "$work/run/stats.jsonl" "$OUT/"
last=$(ls "$work/run/samples/"*.png 2>/dev/null | tail -n 1 || true)
[ -n "$last" ] && cp "$last" "$OUT/samples.png"
stamp "done: $(ls "$OUT" | tr '\n' ' ')"
