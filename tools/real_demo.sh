#!/usr/bin/env bash
# Real lesions end to end on this machine's CPUs: build, train configs/brats_flair_cpu.yaml on
# the training cases of the saved split of ten BraTS 2018 FLAIR scans, and evaluate it on the
# held-out cases after 1 and 10 clicks, with metrics on the crop and on each scan's own grid,
# overlays and masks in the scans' geometry; then the same clicks through the sessions that
# msam segment and msam serve run (what a person gets).
# Usage: tools/real_demo.sh [output folder, default runs/real_demo]
# MSAM_BRATS_DIR: the data folder (default ../shared/data/brats2018_flair beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/real_demo}
DATA=${MSAM_BRATS_DIR:-../shared/data/brats2018_flair}
start=$(date +%s)
# See tools/demo.sh: LibTorch's OpenMP threads otherwise spin while they wait.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ ! -f "$DATA/imagesTr/brats18_00_0000.nii.gz" ]; then
  echo "real_demo: no BraTS FLAIR cases in $DATA (set MSAM_BRATS_DIR)" >&2
  exit 2
fi

bash tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target msam
built=$(date +%s)

MSAM=build/msam
CONFIG=configs/brats_flair_cpu.yaml
SET=(--set "data.datasets.0.root=$DATA" --set "output=$OUT")
"$MSAM" train --config "$CONFIG" "${SET[@]}" --resume
# Clicks as in training: centre of the thickest error, all clicks so far, mask at probability 0.5.
"$MSAM" eval --config "$CONFIG" "${SET[@]}" --checkpoint "$OUT/best.safetensors" \
  --split test --clicks 10 --protocol center --multi-click --threshold 0 --overlays 2 --save-masks
"$MSAM" eval --config "$CONFIG" "${SET[@]}" --checkpoint "$OUT/best.safetensors" \
  --split test --clicks 10 --protocol center --multi-click --threshold 0 --overlays 2 --save-masks \
  --sessions --out "$OUT/eval_sessions"

end=$(date +%s)
echo
echo "real demo finished in $(( end - start )) s ($(( end - built )) s after the build)"
echo "training curves: $OUT/loss.svg $OUT/dice.svg (metrics.csv beside them)"
echo "evaluation:      $OUT/eval_test/per_case.csv summary.csv dice_vs_clicks.svg overlays/ masks/"
echo "sessions:        $OUT/eval_sessions/per_case.csv summary.csv clicks/ overlays/ masks/"
