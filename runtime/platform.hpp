// Opening the GPU platform and the compiler. The only place that picks an implementation
// (CUDA today; HIP would be chosen here too), so the rest of q4jit sees Backend and Compiler.
// No GPU is a normal outcome: the Error's one-line message says why (see driver_library.hpp).
#pragma once

#include <memory>

#include "common/error.hpp"
#include "runtime/backend.hpp"
#include "runtime/compiler.hpp"

namespace q4jit {

// The GPU backend with device 0 not yet selected, or why there is none ("no GPU: ...").
Result<std::unique_ptr<Backend>> open_gpu_backend();
// The compiler for the platform (NVRTC), or why it cannot run.
Result<std::unique_ptr<Compiler>> open_compiler();

}  // namespace q4jit
