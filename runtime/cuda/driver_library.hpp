// The CUDA driver (libcuda.so.1) opened with dlopen, every entry point of driver_symbols.def
// resolved through cuGetProcAddress at the headers' CUDA_VERSION, and cuInit run. Owned by the
// CUDA backend (no globals). Failing to open is normal on machines without a GPU: open_driver
// returns an Error whose one-line message says why (library missing, the toolkit's stub library,
// no device, driver too old).
#pragma once

#include <cuda.h>

#include <memory>
#include <string>

#include "common/error.hpp"
#include "runtime/cuda/dynamic_library.hpp"

namespace q4jit {

struct DriverLibrary {
  DynamicLibrary library;
#define Q4JIT_DRIVER_SYMBOL(name) decltype(&::name) name = nullptr;
#include "runtime/cuda/driver_symbols.def"
#undef Q4JIT_DRIVER_SYMBOL

  // "cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
  std::string describe(CUresult result, const char* call) const;
};

// Opens $Q4JIT_LIBCUDA when set (a path, for tests and unusual installs), else libcuda.so.1.
Result<std::unique_ptr<DriverLibrary>> open_driver();

}  // namespace q4jit

// Throws q4jit::Error naming the driver call when it fails: Q4JIT_CU(driver, cuMemAlloc, &p, n).
#define Q4JIT_CU(driver, name, ...)                                  \
  do {                                                               \
    const CUresult q4jit_result_ = (driver).name(__VA_ARGS__);       \
    if (q4jit_result_ != CUDA_SUCCESS)                               \
      throw ::q4jit::Error((driver).describe(q4jit_result_, #name)); \
  } while (0)
