// The HIP runtime (libamdhip64) and hiprtc opened with dlopen, every entry point of
// hip_symbols.def and hiprtc_symbols.def resolved at open; the error lists what is missing.
// HIP 5.x keeps hiprtc inside libamdhip64; HIP 6.x moved it to libhiprtc, opened beside it.
// Opening needs no GPU: the compiler uses only hipRuntimeGetVersion and hiprtc. Owned by the HIP
// backend or the hiprtc compiler (no globals). Built against the HIP 5.x headers
// (/usr/include/hip from Debian's libamdhip64-dev).
#pragma once

#include <hip/hip_runtime_api.h>
#include <hip/hiprtc.h>

#include <memory>
#include <string>

#include "common/error.hpp"
#include "runtime/cuda/dynamic_library.hpp"

namespace q4jit {

struct HipLibrary {
  DynamicLibrary library;
#define Q4JIT_HIP_SYMBOL(name) decltype(&::name) name = nullptr;
#include "runtime/hip/hip_symbols.def"
#undef Q4JIT_HIP_SYMBOL
  hipError_t (*hipMalloc)(void** pointer, size_t bytes) = nullptr;  // the C entry point
  hipError_t (*hipHostMalloc)(void** pointer, size_t bytes, unsigned flags) = nullptr;  // same
  // hipGetDevicePropertiesR0000 (HIP 6) or hipGetDeviceProperties (HIP 5): the 5.x struct layout
  // these headers declare.
  decltype(&::hipGetDeviceProperties) get_device_properties = nullptr;
  int version = 0;  // hipRuntimeGetVersion: major * 10^7 + minor * 10^5 + patch, 50221153

  int major() const {
    return version / 10000000;
  }
  int minor() const {
    return version / 100000 % 100;
  }
  // "5.2.21153"
  std::string version_text() const;
  // "hipMalloc: hipErrorOutOfMemory (out of memory)"
  std::string describe(hipError_t result, const char* call) const;
};

// Opens $Q4JIT_LIBAMDHIP64 when set (a path), else libamdhip64.so.6 or .so.5 by plain name, then
// in $ROCM_PATH/lib and /opt/rocm/lib. Does not call hipInit.
Result<std::unique_ptr<HipLibrary>> open_hip_runtime();

struct HiprtcLibrary {
  DynamicLibrary library;  // libhiprtc (HIP 6); empty when hiprtc is inside libamdhip64 (HIP 5)
  std::string path;        // where the entry points came from
#define Q4JIT_HIPRTC_SYMBOL(name) decltype(&::name) name = nullptr;
#include "runtime/hip/hiprtc_symbols.def"
#undef Q4JIT_HIPRTC_SYMBOL

  // "hiprtcCompileProgram: HIPRTC_ERROR_COMPILATION"
  std::string describe(hiprtcResult result, const char* call) const;
};

// hiprtc for `runtime`: from libamdhip64 itself when it has hiprtcCompileProgram, else
// $Q4JIT_LIBHIPRTC or libhiprtc.so.<major> (by plain name, then beside libamdhip64). The result
// may point into runtime's library: keep runtime alive as long as it.
Result<std::unique_ptr<HiprtcLibrary>> open_hiprtc(const HipLibrary& runtime);

}  // namespace q4jit

// Throws q4jit::Error naming the HIP call when it fails: Q4JIT_HIP(hip, hipMalloc, &p, n).
#define Q4JIT_HIP(hip, name, ...)                                                                \
  do {                                                                                           \
    const hipError_t q4jit_result_ = (hip).name(__VA_ARGS__);                                    \
    if (q4jit_result_ != hipSuccess) throw ::q4jit::Error((hip).describe(q4jit_result_, #name)); \
  } while (0)
