#!/usr/bin/env bash
# On the GPU machine: the GPU engine's tests (against the CPU reference and, with a shared/ folder,
# the goldens) and the attention_decode proof, from binaries in ${BIN:-.gpu}/ (q4jit,
# q4jit_gpu_model_tests, q4jit_kernel_tests). Logs to ${OUT:-gpu-logs}/. Optional: SHARED=<dir
# laid out like ../shared> for the golden tests; FILTER=<gtest filter> for the engine tests.
# Prints one summary line at the end; exit code 0 when everything passed.
set -uo pipefail
BIN=${BIN:-.gpu}
LOGS=${OUT:-gpu-logs}
mkdir -p "$LOGS"
export Q4JIT_CACHE_DIR=${Q4JIT_CACHE_DIR:-/tmp/q4jit-kernels}
# The GPU machine's libsentencepiece (Ubuntu 24.04) is not ABI-compatible with the Debian 12 one
# the binaries were built against (it crashes in Tokenizer::load): bring ours in $BIN/../lib.
[ -d "$BIN/../lib" ] && export LD_LIBRARY_PATH="$(cd "$BIN/../lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -n "${SHARED:-}" ] && export Q4JIT_SHARED_DIR="$SHARED"
failures=0
"$BIN/q4jit_gpu_model_tests" --gtest_filter="${FILTER:-*}" 2>&1 | tee "$LOGS/gpu_model_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures=$((failures + 1))
"$BIN/q4jit_kernel_tests" --gtest_filter='OpsGpu.AttentionDecode*' 2>&1 | tee "$LOGS/attention_decode.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures=$((failures + 1))
passed=$(cat "$LOGS"/*.log | grep -oE '\[  PASSED  \] [0-9]+' | grep -oE '[0-9]+$' | awk "{s+=\$1} END {print s+0}")
skipped=$(cat "$LOGS"/*.log | grep -oE '\[  SKIPPED \] [0-9]+ test' | grep -oE '[0-9]+' | awk "{s+=\$1} END {print s+0}")
printf 'gpu_engine: %s; %s tests passed, %s skipped; %s\n' \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" "${passed:-0}" "${skipped:-0}" \
  "$([ "$failures" -eq 0 ] && echo OK || echo "$failures suite(s) FAILED")"
[ "$failures" -eq 0 ]
