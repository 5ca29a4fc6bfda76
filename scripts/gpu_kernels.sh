#!/usr/bin/env bash
# On the GPU machine: the q4_matmul proof (every configuration against the CPU reference) and
# bench-kernels on the Llama-7B shapes at M=1 and 16. Expects the Release binaries in
# ${BIN:-.gpu}/ (q4jit, q4jit_kernel_tests) and writes logs to ${OUT:-gpu-logs}/.
# Usage: scripts/gpu_kernels.sh [tests|bench|all]   (default all)
set -uo pipefail
BIN=${BIN:-.gpu}
LOGS=${OUT:-gpu-logs}
WHAT=${1:-all}
mkdir -p "$LOGS"
export Q4JIT_CACHE_DIR=${Q4JIT_CACHE_DIR:-/tmp/q4jit-kernels}
nvidia-smi -L | tee "$LOGS/device.txt"
status=0
if [[ $WHAT == tests || $WHAT == all ]]; then
  "$BIN/q4jit_kernel_tests" --gtest_filter='Q4Matmul*' 2>&1 | tee "$LOGS/kernel_tests.log" || status=1
fi
if [[ $WHAT == bench || $WHAT == all ]]; then
  for shape in 4096,12288 4096,4096 4096,22016 11008,4096; do
    "$BIN/q4jit" bench-kernels --shape "$shape" --m 1,16 --group-size 128 --top ${TOP:-5} \
      2>&1 | tee -a "$LOGS/bench_kernels.log" || status=1
  done
fi
exit $status
