// NVRTC opened with dlopen: libnvrtc.so.13, then libnvrtc.so.12, by plain name first, then in
// $CUDA_HOME/lib64 and /usr/local/cuda/lib64 ($Q4JIT_LIBNVRTC, a path, overrides all of them).
// Every entry point of nvrtc_symbols.def is resolved at open; the error lists what is missing.
#pragma once

#include <nvrtc.h>

#include <memory>
#include <string>

#include "common/error.hpp"
#include "runtime/cuda/dynamic_library.hpp"

namespace q4jit {

struct NvrtcLibrary {
  DynamicLibrary library;
#define Q4JIT_NVRTC_SYMBOL(name) decltype(&::name) name = nullptr;
#include "runtime/cuda/nvrtc_symbols.def"
#undef Q4JIT_NVRTC_SYMBOL

  // "nvrtcCompileProgram: NVRTC_ERROR_COMPILATION"
  std::string describe(nvrtcResult result, const char* call) const;
};

Result<std::unique_ptr<NvrtcLibrary>> open_nvrtc();

}  // namespace q4jit
