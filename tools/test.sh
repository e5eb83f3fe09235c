#!/usr/bin/env bash
# The project's test command: install dependencies, configure, build, run every test.
# Usage: tools/test.sh [extra ctest arguments, e.g. -L parity]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
BUILD_DIR=${MSAM_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$(nproc)"
cd "$BUILD_DIR"
# LibTorch's OpenMP threads otherwise spin while they wait, starving the loader threads and
# the other test process on small machines.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --output-on-failure -j "$(nproc)" "$@"
