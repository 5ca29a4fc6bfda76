#!/usr/bin/env bash
# Runs the GPU runtime checks from a build folder (the source tree is not needed: kernels are
# embedded): q4jit devices, a cold then a warm `kernels compile` for the GPU's architecture in a
# fresh store, and the runtime test suite (its GPU tests run when a GPU is present).
# Usage: scripts/gpu_suite.sh [BUILD_DIR]   (default: build/ beside this script's folder)
# Prints one summary line at the end; exit code 0 when everything passed.
set -uo pipefail
build="${1:-$(cd "$(dirname "$0")/.." && pwd)/build}"
q4jit="$build/q4jit"
tests="$build/tests/q4jit_runtime_tests"
for file in "$q4jit" "$tests"; do
  [ -x "$file" ] || { echo "gpu_suite: $file not found (build q4jit and q4jit_runtime_tests)" >&2; exit 2; }
done
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
failures=0

echo "== q4jit devices"
"$q4jit" devices || failures=$((failures + 1))

echo "== kernels compile, cold (empty store $store)"
cold_start=$(date +%s%N)
"$q4jit" kernels compile --cache-dir "$store" -v || failures=$((failures + 1))
cold_ms=$((($(date +%s%N) - cold_start) / 1000000))

echo "== kernels compile, warm (nothing may compile)"
warm_start=$(date +%s%N)
Q4JIT_ASSERT_NO_COMPILE=1 "$q4jit" kernels compile --cache-dir "$store" -v || failures=$((failures + 1))
warm_ms=$((($(date +%s%N) - warm_start) / 1000000))

echo "== runtime tests"
Q4JIT_BINARY="$q4jit" "$tests" --gtest_brief=1 2>&1 | tee "$store/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures=$((failures + 1))
passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$store/tests.log" | grep -oE '[0-9]+$' || echo 0)
skipped=$(grep -oE '\[  SKIPPED \] [0-9]+ test' "$store/tests.log" | grep -oE '[0-9]+' || echo 0)
gpu=$("$q4jit" devices --json | sed -n 's/.*"name":"\([^"]*\)".*"uuid".*/\1/p' | head -1)

printf 'gpu_suite: %s; %s tests passed, %s skipped; kernels cold %d ms, warm %d ms; %s\n' \
  "${gpu:-no GPU}" "$passed" "$skipped" "$cold_ms" "$warm_ms" \
  "$([ "$failures" -eq 0 ] && echo OK || echo "$failures step(s) FAILED")"
[ "$failures" -eq 0 ]
