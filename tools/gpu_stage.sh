#!/usr/bin/env bash
# Stages into .devdeps/ what the GPU machine lacks for tools/gpu_check.sh: it has a pip
# PyTorch (LibTorch with CUDA), CMake and a compiler, but no Debian packages and no network.
#  - headers, CMake files and libraries of the build's small dependencies, copied from this
#    machine's Debian packages (nlohmann-json, CLI11, yaml-cpp, spdlog, fmt, zlib headers) and the
#    GoogleTest sources (built there, with its compiler);
#  - the parity fixtures that fit the device tool's 64 MiB transfer limit (the adapter's,
#    decoder's and click loop's files do not; tests/unit/test_device_consistency.cpp covers
#    those modules on the GPU against the CPU, which the full parity suite pins here).
# With --real, for tools/gpu_real.sh instead: in place of the parity fixtures, the ten BraTS
# FLAIR cases prepared here (the GPU build has no ITK to read scans) for
# configs/brats_flair_vitb.yaml, as .devdeps/brats/cache.tar.gz (~30 MiB: the 6 MiB entries
# raw would not fit), and the dataset's file names as empty stand-ins: a build without ITK
# lists the cases by name and trains from their cache entries, never reading the scans.
# Needs build/msam (with ITK) and the scans (MSAM_BRATS_DIR, default
# ../shared/data/brats2018_flair).
# Usage: tools/gpu_stage.sh [--real]   (then run tools/gpu_check.sh, or tools/gpu_real.sh, on
# the GPU machine, carrying .devdeps)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${MSAM_SHARED_DIR:-../shared}
REAL=0
case "${1:-}" in
  --real) REAL=1 ;;
  "") ;;
  *) echo "usage: tools/gpu_stage.sh [--real]" >&2; exit 2 ;;
esac
rm -rf .devdeps
mkdir -p .devdeps/shared/fixtures/parity
# spdlog and fmt as compiled libraries (.so, with yaml-cpp's): their CMake files demand the .so
# files even for the header-only targets, and yaml-cpp's .so already links there.
for pkg in nlohmann-json3-dev libcli11-dev libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev \
    libspdlog1.10 libfmt-dev libfmt9 zlib1g-dev; do
  dpkg -L "$pkg" | while read -r f; do
    case "$f" in /usr/share/doc/* | /usr/share/lintian/* | /usr/share/man/*) continue ;; esac
    if [ -f "$f" ] || [ -L "$f" ]; then
      mkdir -p ".devdeps$(dirname "$f")"
      cp -P "$f" ".devdeps$f"
    fi
  done
done
cp -r /usr/src/googletest .devdeps/googletest
if [ "$REAL" = 1 ]; then
  DATA=${MSAM_BRATS_DIR:-$SHARED/data/brats2018_flair}
  MSAM=${MSAM_BIN:-build/msam}
  [ -x "$MSAM" ] || { echo "gpu_stage.sh --real: no $MSAM (build it: cmake --build build --target msam)" >&2; exit 2; }
  B=.devdeps/brats
  "$MSAM" prepare --config configs/brats_flair_vitb.yaml --set "data.datasets.0.root=$DATA" \
    --set "data.cache_dir=$B/cache"
  for sub in imagesTr labelsTr; do
    mkdir -p "$B/brats2018_flair/$sub"
    for f in "$DATA/$sub"/*.nii.gz; do : >"$B/brats2018_flair/$sub/$(basename "$f")"; done
  done
  tar -czf "$B/cache.tar.gz" -C "$B" cache
  rm -rf "$B/cache"
else
  for f in image_encoder_small lora_qkv prompt_encoder loss_metrics; do
    cp "$SHARED/fixtures/parity/$f.safetensors" .devdeps/shared/fixtures/parity/
  done
fi
du -sh .devdeps
