#!/usr/bin/env bash
# Builds and runs every test suite. Tests that need ../shared (goldens) or a GPU skip with a
# printed reason when those are absent. The input parsers also run under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
# The CPU reference uses OpenMP; with suites running side by side, spinning barriers would make
# each suite wait on the other's threads.
export OMP_WAIT_POLICY=passive

echo "== sanitizer build (ASan+UBSan): input parsers"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQ4JIT_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs" --target q4jit_model_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  build-asan/tests/q4jit_model_tests \
  --gtest_filter='*Safetensors*:*TensorSet*:*MappedFile*:*Config*:*Gptq*:*ActOrderPermutation*:*BadInput*:*Tokenizer*:*StreamDecoder*:*LoadModel*' --gtest_brief=1

echo "== release build"
bash scripts/build.sh

if [ -x build/q4jit ] && build/q4jit kernels --help >/dev/null 2>&1; then
  echo "== NVRTC compile of every kernel template's default configuration (no GPU needed)"
  build/q4jit kernels compile --arch sm_75,sm_80,sm_86,sm_89,sm_90
  if [ -f /usr/include/hip/hiprtc.h ] || [ -f "${ROCM_PATH:-/opt/rocm}/include/hip/hiprtc.h" ]; then
    echo "== hiprtc compile of every AMD kernel template's default configuration (no GPU needed)"
    build/q4jit kernels compile --arch gfx90a,gfx908,gfx1030
  else
    echo "== hiprtc compile skipped: no HIP headers (scripts/setup.sh installs libamdhip64-dev)"
  fi
fi

echo "== test suites"
ctest --test-dir build --output-on-failure -j "$jobs"
