#!/usr/bin/env bash
# Configures and builds q4jit (Release) into build/; the binary is build/q4jit.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
