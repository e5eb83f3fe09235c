# Sourced by tools/gpu_check.sh and tools/gpu_real.sh on the GPU machine (a pip PyTorch with
# CUDA, CMake and a compiler; no Debian packages, no network): records the machine in
# $OUT/env.txt, then configures msam against that PyTorch's LibTorch (no ITK) with what
# tools/gpu_stage.sh put into .devdeps/, and builds the given targets (all without any) into
# $BUILD (default build-gpu). Logs go to $OUT, set by the caller; the summary lines, through
# say(), also to $OUT/summary.txt. Exits on failure.
mkdir -p "$OUT"
BUILD=${MSAM_GPU_BUILD_DIR:-build-gpu}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
step_start=$(date +%s)
elapsed() { echo "$(($(date +%s) - step_start)) s"; }

DEPS=$PWD/.devdeps
[ -d "$DEPS" ] || { echo "no .devdeps/: run tools/gpu_stage.sh on the development machine and carry .devdeps"; exit 2; }

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
  g++ --version | head -1
  cmake --version | head -1
  nproc
} >"$OUT/env.txt" 2>&1
say "== $(sed -n 2p "$OUT/env.txt") | $(sed -n 3p "$OUT/env.txt")"

TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
ZLIB_LIB=$DEPS/usr/lib/x86_64-linux-gnu/libz.a
for z in /usr/lib/x86_64-linux-gnu/libz.so /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1; do
  if [ -e "$z" ]; then ZLIB_LIB=$z; break; fi
done
export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

# The staged spdlog 1.10 needs the fmt 9 it was built with, but the pip wheel ships a newer fmt
# in torch/include, which its -isystem order puts first: a -I folder holding only fmt 9 comes
# before every -isystem folder, for spdlog and LibTorch's headers alike.
mkdir -p "$DEPS/fmt-first"
ln -sfn "$DEPS/usr/include/fmt" "$DEPS/fmt-first/fmt"
configure() {
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMSAM_WITH_ITK=OFF \
    -DCMAKE_CXX_FLAGS="-I$DEPS/fmt-first" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS/usr" -DMSAM_GTEST_SOURCE_DIR="$DEPS/googletest" \
    -DZLIB_INCLUDE_DIR="$DEPS/usr/include" -DZLIB_LIBRARY="$ZLIB_LIB" \
    -DMSAM_SHARED_DIR="$DEPS/shared" "$@" >>"$OUT/build.log" 2>&1
}
targets=()
for t in "$@"; do targets+=(--target "$t"); done
build() { cmake --build "$BUILD" ${targets[@]+"${targets[@]}"} -j "$(nproc)" -- -k 0 >>"$OUT/build.log" 2>&1; }

: >"$OUT/build.log"
if ! configure; then
  say "== configure FAILED ($(elapsed)):"
  tail -40 "$OUT/build.log"
  exit 1
fi
grep "msam: LibTorch" "$OUT/build.log" | tail -1 | tee -a "$SUMMARY"
if ! build; then
  grep -m 30 -E "error|Error" "$OUT/build.log"
  say "== build failed ($(elapsed)); retrying without LibTorch's CUDA headers (no graphs, no peak memory)"
  configure -DMSAM_CUDA_HEADERS=OFF && build || {
    say "== build FAILED ($(elapsed))"
    grep -m 60 -E "error|Error" "$OUT/build.log"
    exit 1
  }
fi
say "== build ok ($(elapsed))"
