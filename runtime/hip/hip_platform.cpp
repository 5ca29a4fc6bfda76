// The HIP entry points of runtime/platform.cpp (hip_platform.hpp).
#include "runtime/hip/hip_platform.hpp"

#include "runtime/hip/hip_backend.hpp"
#include "runtime/hip/hiprtc_compiler.hpp"

namespace q4jit {

Result<std::unique_ptr<Backend>> open_hip_backend() {
  auto hip = open_hip_runtime();
  if (!hip) return Error(std::string("no GPU: ") + hip.error().what());
  return open_hip_backend_with(std::move(hip.value()));
}

Result<std::unique_ptr<Compiler>> open_hiprtc_compiler() {
  return HiprtcCompiler::open();
}

}  // namespace q4jit
