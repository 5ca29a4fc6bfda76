// Chooses the CUDA or HIP implementations of Backend and Compiler (platform.hpp). NVIDIA first:
// HIP is tried only when CUDA finds no device, so machines with both keep today's behaviour.
#include "runtime/platform.hpp"

#include "runtime/cuda/cuda_backend.hpp"
#include "runtime/cuda/nvrtc_compiler.hpp"
#include "runtime/hip/hip_archs.hpp"
#if Q4JIT_HAVE_HIP
#include "runtime/hip/hip_platform.hpp"
#endif

namespace q4jit {

namespace {

Result<std::unique_ptr<Backend>> open_cuda_backend() {
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

#if !Q4JIT_HAVE_HIP
Error without_hip(const char* what) {
  return Error(std::string(what) + ": this q4jit was built without the HIP headers")
      .with_hint("install libamdhip64-dev (scripts/setup.sh) and rebuild");
}
Result<std::unique_ptr<Backend>> open_hip_backend() {
  return without_hip("no GPU: HIP backend");
}
Result<std::unique_ptr<Compiler>> open_hiprtc_compiler() {
  return without_hip("hiprtc");
}
#endif

// The CUDA reason, with the HIP one added when a HIP runtime was there to ask.
Error no_gpu(const Error& cuda, const Error& hip) {
  const std::string hip_reason = hip.what();
  if (!hip_built() || hip_reason.find("libamdhip64 was not found") != std::string::npos) {
    return cuda;
  }
  const std::string prefix = "no GPU: ";
  const std::string hip_text =
      hip_reason.starts_with(prefix) ? hip_reason.substr(prefix.size()) : hip_reason;
  Error combined(std::string(cuda.what()) + "; AMD: " + hip_text);
  for (const auto& [key, value] : cuda.context()) combined.with(key, value);
  if (!cuda.hint().empty()) combined.with_hint(cuda.hint());
  return combined;
}

}  // namespace

std::string platform_name(Platform platform) {
  return platform == Platform::hip ? "hip" : "cuda";
}

Platform parse_platform(const std::string& text) {
  if (text == "cuda") return Platform::cuda;
  if (text == "hip") return Platform::hip;
  throw Error("platform '" + text + "': expected cuda or hip");
}

bool hip_built() {
  return Q4JIT_HAVE_HIP != 0;
}

Result<std::unique_ptr<Backend>> open_gpu_backend() {
  auto cuda = open_cuda_backend();
  if (cuda) return cuda;
  auto hip = open_hip_backend();
  if (hip) return hip;
  return no_gpu(cuda.error(), hip.error());
}

Result<std::unique_ptr<Backend>> open_gpu_backend(Platform platform) {
  return platform == Platform::hip ? open_hip_backend() : open_cuda_backend();
}

Result<std::unique_ptr<Compiler>> open_compiler() {
  return NvrtcCompiler::open();
}

Result<std::unique_ptr<Compiler>> open_compiler(Platform platform) {
  return platform == Platform::hip ? open_hiprtc_compiler() : NvrtcCompiler::open();
}

Result<std::unique_ptr<Compiler>> open_compiler_for(const Backend& backend) {
  return open_compiler(parse_platform(backend.platform()));
}

CompileTarget target_for_device(const DeviceInfo& device, const Compiler& compiler) {
  const bool amd_device = !device.arch_name.empty();
  if (amd_device != (compiler.platform() == "hip")) {
    throw Error(device.name + ": " + (amd_device ? "an AMD" : "an NVIDIA") +
                " device cannot run what " + compiler.description() + " compiles");
  }
  if (!amd_device) return select_target(device.sm(), compiler.supported_archs());
  CompileTarget target;
  target.gfx = parse_gfx(device.arch_name);
  CompileRequest probe;  // hiprtc's options refuse an architecture it cannot compile for
  probe.target = target;
  compiler.key_options(probe);
  return target;
}

}  // namespace q4jit
