// Opening the GPU platform and the compiler. The only place that picks an implementation (CUDA in
// runtime/cuda/, HIP for AMD in runtime/hip/), so the rest of q4jit sees Backend and Compiler.
// No GPU is a normal outcome: the Error's one-line message says why (see driver_library.hpp).
// The HIP parts exist only when the build found the HIP headers (hip_built()).
#pragma once

#include <memory>
#include <string>

#include "common/error.hpp"
#include "runtime/backend.hpp"
#include "runtime/compiler.hpp"

namespace q4jit {

enum class Platform { cuda, hip };

// "cuda" or "hip"; parse_platform is its inverse (Error on anything else).
std::string platform_name(Platform platform);
Platform parse_platform(const std::string& text);

// Whether this build includes the HIP backend and hiprtc compiler (HIP headers found at build).
bool hip_built();

// The GPU backend with device 0 not yet selected: CUDA when an NVIDIA device is there, else HIP
// when an AMD one is, else why there is none ("no GPU: ...", the CUDA reason first).
Result<std::unique_ptr<Backend>> open_gpu_backend();
// The backend of one platform, or why it cannot run.
Result<std::unique_ptr<Backend>> open_gpu_backend(Platform platform);
// The CUDA compiler (NVRTC), or why it cannot run.
Result<std::unique_ptr<Compiler>> open_compiler();
// The compiler of one platform: NVRTC or hiprtc. Needs no GPU.
Result<std::unique_ptr<Compiler>> open_compiler(Platform platform);
// The compiler for the backend's platform.
Result<std::unique_ptr<Compiler>> open_compiler_for(const Backend& backend);

// What to compile for `device` with `compiler`: select_target on NVIDIA, the device's gfx
// architecture on AMD (Error when hiprtc cannot compile for it).
CompileTarget target_for_device(const DeviceInfo& device, const Compiler& compiler);

}  // namespace q4jit
