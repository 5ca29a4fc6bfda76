#!/usr/bin/env bash
# Installs what q4jit needs to build and test on Debian/Ubuntu, skipping what is already there.
# The CUDA toolkit is needed for its headers (cuda.h, nvrtc.h, cuda_fp16.h) and NVRTC; it is looked
# for at $CUDA_HOME, then /usr/local/cuda. No GPU is needed to build or to run the tests.
# libamdhip64-dev (HIP 5.2 on Debian 12) brings the HIP headers and hiprtc, with which the AMD
# kernels are compile-checked (no AMD GPU needed).
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config git
          libsentencepiece-dev libsqlite3-dev nlohmann-json3-dev libcli11-dev
          googletest libgtest-dev libssl-dev
          libamdhip64-dev)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

cuda_home="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -f "$cuda_home/include/cuda.h" ] || [ ! -f "$cuda_home/include/nvrtc.h" ]; then
  echo "setup: the CUDA toolkit was not found at $cuda_home (need include/cuda.h and nvrtc.h)." >&2
  echo "setup: install the CUDA Toolkit (12.x or 13.x) there, or set CUDA_HOME." >&2
  exit 1
fi
echo "setup: CUDA toolkit at $cuda_home"
