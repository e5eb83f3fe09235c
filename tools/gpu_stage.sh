#!/usr/bin/env bash
# Stages into .devdeps/ what the GPU machine lacks for tools/gpu_check.sh: it has a pip
# PyTorch (LibTorch with CUDA), CMake and a compiler, but no Debian packages and no network.
#  - headers, CMake files and libraries of the build's small dependencies, copied from this
#    machine's Debian packages (nlohmann-json, CLI11, yaml-cpp, spdlog, fmt, zlib headers) and the
#    GoogleTest sources (built there, with its compiler);
#  - the parity fixtures that fit the device tool's 64 MiB transfer limit (the adapter's,
#    decoder's and click loop's files do not; tests/unit/test_device_consistency.cpp covers
#    those modules on the GPU against the CPU, which the full parity suite pins here).
# Usage: tools/gpu_stage.sh   (then run tools/gpu_check.sh on the GPU machine, carrying .devdeps)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${MSAM_SHARED_DIR:-../shared}
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
for f in image_encoder_small lora_qkv prompt_encoder loss_metrics; do
  cp "$SHARED/fixtures/parity/$f.safetensors" .devdeps/shared/fixtures/parity/
done
du -sh .devdeps
