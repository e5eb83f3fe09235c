#!/usr/bin/env bash
# The GPU check, in one call on a machine with an NVIDIA GPU and a pip PyTorch (CUDA):
# configure msam against that PyTorch's LibTorch (no ITK: core, CLI and tests), build, run the
# parity tests and the CPU-vs-GPU consistency tests on CUDA in float32 and under bf16
# autocast, then `msam bench --device cuda`. Logs go to $OUT (default out/gpu_check); the
# last lines printed are the summary.
# Prepare on the development machine first: tools/gpu_stage.sh (fills .devdeps/).
# Usage: tools/gpu_check.sh   (MSAM_BENCH_PRECISIONS=fp32,bf16 to bench fewer precisions, none
# to skip the bench)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}

. tools/gpu_build.sh

# Parity fixtures that travel (see tools/gpu_stage.sh), and the CPU-vs-GPU consistency tests.
PARITY_FILTER='*ImageEncoderParity*:*LoraParity*:PromptEncoderParity*:LossParity*:MetricsParity*'
run_tests() {  # label, env assignments...
  local label=$1
  shift
  local log="$OUT/tests.log"
  echo "==== $label" >>"$log"
  if env "$@" timeout 300 "$BUILD/msam_parity_tests" --gtest_filter="$PARITY_FILTER" >>"$log" 2>&1 &&
    env "$@" timeout 300 "$BUILD/msam_unit_tests" --gtest_filter='DeviceConsistency*' >>"$log" 2>&1; then
    say "== tests [$label]: passed ($(grep -c '^\[       OK \]' <(sed -n "/==== $label/,\$p" "$log")) ok) ($(elapsed))"
  else
    say "== tests [$label]: FAILED ($(elapsed))"
    sed -n "/==== $label/,\$p" "$log" | grep -E "FAILED|Failure|error|Expected|Which is|rel|max" | head -30
  fi
}
: >"$OUT/tests.log"
run_tests "cuda fp32" MSAM_TEST_DEVICE=cuda
run_tests "cuda bf16 autocast" MSAM_TEST_DEVICE=cuda MSAM_TEST_PRECISION=bf16
# The same LibTorch 2.x on the CPU: the SDPA path and everything else that differs from 1.13.
if timeout 300 "$BUILD/msam_parity_tests" --gtest_filter="$PARITY_FILTER" >>"$OUT/tests.log" 2>&1; then
  say "== tests [cpu, LibTorch 2.x]: parity passed ($(elapsed))"
else
  say "== tests [cpu, LibTorch 2.x]: parity FAILED ($(elapsed))"
fi

# Data parallelism on NCCL: one rank per GPU trains two steps, all end with the same weights.
if MSAM_TEST_DEVICE=cuda timeout 300 "$BUILD/msam_dist_tests" \
    --gtest_filter='DataParallel.EveryGpuTakesATrainingStepOnNccl' >"$OUT/dist.log" 2>&1; then
  say "== dist [NCCL]: $(grep -m1 'GPU rank' "$OUT/dist.log") ($(elapsed))"
else
  rc=$?
  if grep -q '^\[  PASSED  \] 1 test' "$OUT/dist.log"; then
    say "== dist [NCCL]: the test passed, then the process exited with status $rc ($(elapsed))"
  else
    say "== dist [NCCL]: FAILED ($(elapsed))"
  fi
  grep -E "error|Failure|FAILED|Expected" "$OUT/dist.log" | head -20
fi

if [ "${MSAM_BENCH_PRECISIONS:-}" = none ]; then
  say "== msam bench skipped (MSAM_BENCH_PRECISIONS=none)"
else
  say "== msam bench --device cuda"
  timeout 400 "$BUILD/msam" bench --device cuda --precision "${MSAM_BENCH_PRECISIONS:-fp32,bf16,fp16}" \
    --batch-sizes 2,8 --repeats 10 --train-repeats 5 2>&1 | tee "$OUT/bench.txt" | tee -a "$SUMMARY"
fi
say "== done ($(elapsed))"
