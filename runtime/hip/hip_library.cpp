// Opening the HIP runtime and hiprtc (hip_library.hpp).
#include "runtime/hip/hip_library.hpp"

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace q4jit {

namespace {

namespace fs = std::filesystem;

// ROCm install folders to look in after the loader's own search path.
std::vector<std::string> rocm_lib_dirs() {
  std::vector<std::string> dirs;
  if (const char* root = std::getenv("ROCM_PATH"); root && *root) {
    dirs.push_back(std::string(root) + "/lib");
  }
  dirs.push_back("/opt/rocm/lib");
  return dirs;
}

std::vector<std::string> candidates(const char* override_variable,
                                    const std::vector<std::string>& names,
                                    std::vector<std::string> dirs) {
  if (const char* path = std::getenv(override_variable); path && *path) return {path};
  std::vector<std::string> list = names;
  for (const std::string& dir : dirs) {
    for (const std::string& name : names) list.push_back(dir + "/" + name);
  }
  return list;
}

template <typename Pointer>
void bind(const DynamicLibrary& library, const char* name, Pointer& pointer, std::string& missing) {
  pointer = reinterpret_cast<Pointer>(library.symbol(name));
  if (pointer == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(name);
}

}  // namespace

std::string HipLibrary::version_text() const {
  return std::to_string(major()) + "." + std::to_string(minor()) + "." +
         std::to_string(version % 100000);
}

std::string HipLibrary::describe(hipError_t result, const char* call) const {
  const char* name = hipGetErrorName ? hipGetErrorName(result) : nullptr;
  const char* text = hipGetErrorString ? hipGetErrorString(result) : nullptr;
  std::string message = std::string(call) + ": " +
                        (name ? name : "hipError_t " + std::to_string(static_cast<int>(result)));
  // HIP 5.2 often gives the name again as the description.
  if (text != nullptr && (name == nullptr || std::string(text) != name)) {
    message += " (" + std::string(text) + ")";
  }
  return message;
}

Result<std::unique_ptr<HipLibrary>> open_hip_runtime() {
  auto hip = std::make_unique<HipLibrary>();
  std::string tried;
  hip->library = DynamicLibrary::open_first(
      candidates("Q4JIT_LIBAMDHIP64", {"libamdhip64.so.6", "libamdhip64.so.5"}, rocm_lib_dirs()),
      tried);
  if (!hip->library) {
    return Error("the HIP runtime libamdhip64 was not found (" + tried + ")")
        .with_hint("install libamdhip64 (Debian: libamdhip64-dev) or ROCm, or set ROCM_PATH");
  }
  std::string missing;
#define Q4JIT_HIP_SYMBOL(name) bind(hip->library, #name, hip->name, missing);
#include "runtime/hip/hip_symbols.def"
#undef Q4JIT_HIP_SYMBOL
  bind(hip->library, "hipMalloc", hip->hipMalloc, missing);
  bind(hip->library, "hipHostMalloc", hip->hipHostMalloc, missing);
  hip->get_device_properties = reinterpret_cast<decltype(hip->get_device_properties)>(
      hip->library.symbol("hipGetDevicePropertiesR0000"));
  if (hip->get_device_properties == nullptr) {
    bind(hip->library, "hipGetDeviceProperties", hip->get_device_properties, missing);
  }
  if (!missing.empty()) {
    return Error(hip->library.path() + ": missing HIP entry points: " + missing);
  }
  const hipError_t result = hip->hipRuntimeGetVersion(&hip->version);
  if (result != hipSuccess) {
    return Error(hip->library.path() + ": " + hip->describe(result, "hipRuntimeGetVersion"));
  }
  return hip;
}

std::string HiprtcLibrary::describe(hiprtcResult result, const char* call) const {
  const char* text = hiprtcGetErrorString ? hiprtcGetErrorString(result) : nullptr;
  return std::string(call) + ": " +
         (text ? text : "hiprtcResult " + std::to_string(static_cast<int>(result)));
}

Result<std::unique_ptr<HiprtcLibrary>> open_hiprtc(const HipLibrary& runtime) {
  auto hiprtc = std::make_unique<HiprtcLibrary>();
  const DynamicLibrary* source = &runtime.library;
  hiprtc->path = runtime.library.path();
  if (runtime.library.symbol("hiprtcCompileProgram") == nullptr) {
    const std::string name = "libhiprtc.so." + std::to_string(runtime.major());
    std::vector<std::string> dirs = {fs::path(runtime.library.path()).parent_path().string()};
    for (const std::string& dir : rocm_lib_dirs()) dirs.push_back(dir);
    std::string tried;
    hiprtc->library =
        DynamicLibrary::open_first(candidates("Q4JIT_LIBHIPRTC", {name}, dirs), tried);
    if (!hiprtc->library) {
      return Error("hiprtc not found: " + runtime.library.path() +
                   " has no hiprtc entry points and " + name + " did not open (" + tried + ")")
          .with_hint("install ROCm's hiprtc (HIP 6 ships it as libhiprtc)");
    }
    source = &hiprtc->library;
    hiprtc->path = hiprtc->library.path();
  }
  std::string missing;
#define Q4JIT_HIPRTC_SYMBOL(name) bind(*source, #name, hiprtc->name, missing);
#include "runtime/hip/hiprtc_symbols.def"
#undef Q4JIT_HIPRTC_SYMBOL
  if (!missing.empty()) return Error(hiprtc->path + ": missing hiprtc entry points: " + missing);
  return hiprtc;
}

}  // namespace q4jit
