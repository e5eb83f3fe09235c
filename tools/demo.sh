#!/usr/bin/env bash
# The main job end to end on this machine's CPUs: build, generate a synthetic lesion dataset,
# train the tiny M-SAM configuration, evaluate it on the held-out test split after 1 and 10
# clicks, and say where the curves and overlays are.
# Usage: tools/demo.sh [output folder, default runs/demo]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
CASES=${MSAM_DEMO_CASES:-30}
start=$(date +%s)
# LibTorch's OpenMP threads otherwise spin while they wait; with the loader thread beside
# them on a 2-core machine that spinning took about half of the CPU time.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

bash tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target msam

MSAM=build/msam
SET=(--set "data.datasets.0.root=$OUT/data" --set "output=$OUT")
if [ ! -f "$OUT/data/dataset.json" ]; then
  # One lesion per case: the label is the lesion the clicks point at.
  "$MSAM" synth --out "$OUT/data" --cases "$CASES" --seed 7 --max-lesions 1
fi
"$MSAM" train --config configs/tiny_cpu.yaml "${SET[@]}" --resume
# Clicks as in training (configs/tiny_cpu.yaml: centre of the thickest error, all clicks so far,
# mask at probability 0.5); `msam eval` otherwise simulates the reference's (a random error
# voxel, the newest click only, mask = logits > 0.5).
"$MSAM" eval --config configs/tiny_cpu.yaml "${SET[@]}" --checkpoint "$OUT/best.safetensors" \
  --split test --clicks 10 --protocol center --multi-click --threshold 0 --overlays 3 --save-masks

echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "training curves: $OUT/loss.svg $OUT/dice.svg (metrics.csv beside them)"
echo "evaluation:      $OUT/eval_test/per_case.csv summary.csv dice_vs_clicks.svg overlays/ masks/"
