// Construction and small queries of the compile-stage value types (compile_types.hpp).
#include "runtime/compile_types.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "kernel_sources/embedded_sources.hpp"

namespace q4jit {

namespace {
SourceFile to_source_file(const EmbeddedFile& file) {
  return {std::string(file.name), std::string(file.bytes), std::string(file.sha256)};
}
}  // namespace

KernelSource embedded_kernel_source(const std::string& name) {
  const EmbeddedFile* file = find_embedded_file(name);
  if (file == nullptr) throw Error(name + ": not among the embedded kernel sources");
  KernelSource source;
  source.main = to_source_file(*file);
  for (const EmbeddedFile* header : embedded_includes(*file)) {
    source.headers.push_back(to_source_file(*header));
  }
  return source;
}

std::string CompileTarget::arch_option() const {
  return (amd() ? "--offload-arch=" : "--gpu-architecture=") + label();
}

std::string CompileTarget::label() const {
  if (amd()) return gfx;
  return (ptx ? "compute_" : "sm_") + std::to_string(sm) + (arch_specific ? "a" : "");
}

int parse_sm(const std::string& text) {
  std::string digits = text;
  if (digits.starts_with("sm_")) digits = digits.substr(3);
  const bool numeric =
      !digits.empty() && digits.size() <= 3 && std::all_of(digits.begin(), digits.end(), ::isdigit);
  if (!numeric) throw Error("architecture '" + text + "': expected sm_XY, e.g. sm_90");
  return std::stoi(digits);
}

CompileTarget select_target(int device_sm, const std::vector<int>& supported) {
  if (device_sm == 0) {
    throw Error(
        "select_target: the device has no NVIDIA compute capability (an AMD GPU?); its target "
        "comes from target_for_device (runtime/platform.hpp)");
  }
  if (device_sm < 75) {
    throw Error("sm_" + std::to_string(device_sm) +
                ": q4jit needs compute capability 7.5 (Turing) or newer");
  }
  if (std::find(supported.begin(), supported.end(), device_sm) != supported.end()) {
    return {device_sm, false};
  }
  int newest_below = 0;
  for (int arch : supported) {
    if (arch <= device_sm) newest_below = std::max(newest_below, arch);
  }
  if (newest_below == 0) {
    throw Error("sm_" + std::to_string(device_sm) +
                ": the compiler supports no architecture at or below it");
  }
  return {newest_below, true};
}

const std::string& CompiledKernel::lowered_name(const std::string& name_expression) const {
  for (const auto& [expression, lowered] : lowered_names) {
    if (expression == name_expression) return lowered;
  }
  throw Error(family + "." + config + ": no kernel '" + name_expression + "' was compiled");
}

}  // namespace q4jit
