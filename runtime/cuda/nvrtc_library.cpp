// Opening NVRTC (nvrtc_library.hpp).
#include "runtime/cuda/nvrtc_library.hpp"

#include <cstdlib>
#include <vector>

namespace q4jit {

namespace {

std::vector<std::string> nvrtc_candidates() {
  if (const char* path = std::getenv("Q4JIT_LIBNVRTC"); path && *path) return {path};
  const std::vector<std::string> names = {"libnvrtc.so.13", "libnvrtc.so.12"};
  std::vector<std::string> candidates = names;
  std::vector<std::string> folders;
  if (const char* home = std::getenv("CUDA_HOME"); home && *home) {
    folders.push_back(std::string(home) + "/lib64");
  }
  folders.push_back("/usr/local/cuda/lib64");
  for (const std::string& folder : folders) {
    for (const std::string& name : names) candidates.push_back(folder + "/" + name);
  }
  return candidates;
}

}  // namespace

std::string NvrtcLibrary::describe(nvrtcResult result, const char* call) const {
  const char* text = nvrtcGetErrorString ? nvrtcGetErrorString(result) : nullptr;
  return std::string(call) + ": " + (text ? text : "nvrtcResult " + std::to_string(int(result)));
}

Result<std::unique_ptr<NvrtcLibrary>> open_nvrtc() {
  auto nvrtc = std::make_unique<NvrtcLibrary>();
  std::string tried;
  nvrtc->library = DynamicLibrary::open_first(nvrtc_candidates(), tried);
  if (!nvrtc->library) {
    return Error("NVRTC not found (" + tried + ")")
        .with_hint("install the CUDA toolkit's NVRTC (12.x or 13.x) or set CUDA_HOME");
  }
  std::string missing;
#define Q4JIT_NVRTC_SYMBOL(name)                                                       \
  nvrtc->name = reinterpret_cast<decltype(nvrtc->name)>(nvrtc->library.symbol(#name)); \
  if (nvrtc->name == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(#name);
#include "runtime/cuda/nvrtc_symbols.def"
#undef Q4JIT_NVRTC_SYMBOL
  if (!missing.empty()) {
    return Error(nvrtc->library.path() + ": missing NVRTC entry points: " + missing);
  }
  return nvrtc;
}

}  // namespace q4jit
