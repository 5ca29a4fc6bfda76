// Chooses the CUDA implementations of Backend and Compiler (platform.hpp).
#include "runtime/platform.hpp"

#include "runtime/cuda/cuda_backend.hpp"
#include "runtime/cuda/nvrtc_compiler.hpp"

namespace q4jit {

Result<std::unique_ptr<Backend>> open_gpu_backend() {
  auto driver = open_driver();
  if (!driver) return driver.error();
  auto backend = std::make_unique<CudaBackend>(std::move(driver.value()));
  try {
    if (backend->device_count() == 0) {
      return Error("no GPU: the NVIDIA driver reports no CUDA device");
    }
  } catch (const Error& error) {
    return Error(std::string("no GPU: ") + error.what());
  }
  return std::unique_ptr<Backend>(std::move(backend));
}

Result<std::unique_ptr<Compiler>> open_compiler() {
  return NvrtcCompiler::open();
}

}  // namespace q4jit
