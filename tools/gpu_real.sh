#!/usr/bin/env bash
# Real lesions with the ViT-B M-SAM, in one call on a machine with an NVIDIA GPU and a pip
# PyTorch (CUDA): build msam against that LibTorch (no ITK), unpack the BraTS cache that
# tools/gpu_stage.sh --real prepared on the development machine, train
# configs/brats_flair_vitb.yaml from scratch on the saved split's training cases, and evaluate
# the held-out cases after 1 and 10 clicks with tools/real_demo.sh's clicks (in the crop: the
# scans' own grid needs ITK). A second call on the same machine resumes the training where the
# last checkpoint left it. Logs, metrics.csv and the evaluation's tables go to $OUT (default
# out/gpu_real); the last lines printed are the summary.
# Usage: tools/gpu_real.sh [--set key=value ...]   (e.g. --set epochs=80; carry .devdeps)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_real}

B=.devdeps/brats
[ -f "$B/cache.tar.gz" ] || { echo "no $B/cache.tar.gz: run tools/gpu_stage.sh --real on the development machine and carry .devdeps"; exit 2; }
. tools/gpu_build.sh msam

rm -rf "$B/cache"
tar -xzf "$B/cache.tar.gz" -C "$B" || { say "== cannot unpack $B/cache.tar.gz"; exit 1; }
CONFIG=configs/brats_flair_vitb.yaml
RUN=runs/brats_flair_vitb
SET=(--set "data.datasets.0.root=$B/brats2018_flair" --set "data.cache_dir=$B/cache" --set "output=$RUN" "$@")
MSAM=$BUILD/msam

t0=$(date +%s)
if ! "$MSAM" train --config "$CONFIG" "${SET[@]}" --resume >"$OUT/train.log" 2>&1; then
  say "== train FAILED ($(elapsed))"
  tail -30 "$OUT/train.log"
  exit 1
fi
t1=$(date +%s)
cp "$RUN/metrics.csv" "$OUT/"
say "== trained in $((t1 - t0)) s ($(elapsed)); epochs: $(grep -c '] epoch [0-9]*: train loss' "$OUT/train.log") this call"
grep -E '\] epoch [0-9]+: train loss' "$OUT/train.log" | grep -E 'val ' | tail -4 | sed 's/^.*\] //' | tee -a "$SUMMARY"

# Clicks as in training and in tools/real_demo.sh: centre of the thickest error, all clicks so
# far, mask at probability 0.5.
if ! "$MSAM" eval --config "$CONFIG" "${SET[@]}" --checkpoint "$RUN/best.safetensors" \
    --split test --clicks 10 --protocol center --multi-click --threshold 0 >"$OUT/eval.log" 2>&1; then
  say "== eval FAILED ($(elapsed))"
  tail -30 "$OUT/eval.log"
  exit 1
fi
cp "$RUN/eval_test/per_case.csv" "$OUT/"
say "== evaluated in $(($(date +%s) - t1)) s ($(elapsed))"
grep -E '^(Dice@|crop )' "$OUT/eval.log" | tee -a "$SUMMARY"
