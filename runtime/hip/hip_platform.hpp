// The two ways into the HIP implementation that runtime/platform.cpp uses, declared without any
// HIP type so that platform.cpp (which sees cuda.h) never includes the HIP headers. Defined only
// when the build found them (runtime/CMakeLists.txt sets Q4JIT_HAVE_HIP).
#pragma once

#include <memory>

#include "common/error.hpp"
#include "runtime/backend.hpp"
#include "runtime/compiler.hpp"

namespace q4jit {

// libamdhip64, hipInit and at least one AMD device, or why not ("no GPU: ...").
Result<std::unique_ptr<Backend>> open_hip_backend();
// hiprtc (inside libamdhip64 on HIP 5, libhiprtc on HIP 6), or why it cannot run. No GPU needed.
Result<std::unique_ptr<Compiler>> open_hiprtc_compiler();

}  // namespace q4jit
