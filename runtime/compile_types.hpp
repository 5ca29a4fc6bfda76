// The value types of compiling a kernel, one per stage (after jitify):
//   KernelSource (embedded template + the headers it includes, with hashes)
//   -> CompileRequest (family, config, name expressions, target)
//   -> CompiledKernel (binary, log, lowered names: the only stage stored on disk, via cache/)
//   -> LoadedModule and Function (runtime/backend.hpp: the only stages holding driver handles).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace q4jit {

struct SourceFile {
  std::string name;  // "rms_norm.cu", or the header name as written in #include "..."
  std::string text;
  std::string sha256;  // hex
};

struct KernelSource {
  SourceFile main;
  std::vector<SourceFile> headers;  // every embedded header it includes, transitively, by name
};

// The embedded template `name` with its headers; Error when unknown.
KernelSource embedded_kernel_source(const std::string& name);

// What to generate: a CUBIN for sm_XY, or PTX for compute_XY that the driver JIT-compiles; or,
// when gfx is set, an AMD code object for that architecture (hiprtc; sm and ptx unused).
struct CompileTarget {
  int sm = 0;  // 90 for sm_90
  bool ptx = false;
  std::string gfx = {};  // "gfx90a" for AMD (runtime/hip/hip_archs.hpp), empty for NVIDIA
  // "sm_90a": instructions of exactly this architecture (wgmma), which the plain target lacks.
  bool arch_specific = false;  // "gfx90a" for AMD (runtime/hip/hip_archs.hpp), empty for NVIDIA

  bool amd() const { return !gfx.empty(); }
  // "--gpu-architecture=sm_90" or "=compute_90"; "--offload-arch=gfx90a" for AMD.
  std::string arch_option() const;
  std::string label() const;  // "sm_90", "sm_90a", "compute_90" or "gfx90a"
};

// "sm_90" or "90" -> 90; Error on anything else.
int parse_sm(const std::string& text);
// The target for a device of compute capability sm given the compiler's architectures: the CUBIN
// when supported, else PTX of the newest supported architecture not above sm. Error below sm_75.
CompileTarget select_target(int device_sm, const std::vector<int>& supported);

struct CompileRequest {
  std::string family;  // "rms_norm"
  std::string config;  // "bt256.vw8.sr0"
  KernelSource source;
  std::vector<std::string> name_expressions;  // "rms_norm_kernel<256, 8, false>"
  CompileTarget target;
  std::vector<std::string> extra_options;  // family-specific, e.g. -D switches; part of the key
};

struct CompiledKernel {
  std::string family;
  std::string config;
  CompileTarget target;
  std::string key;     // 64 hex digits (runtime/compile_key.hpp)
  std::string binary;  // CUBIN or PTX
  std::string log;     // NVRTC's log; warnings even on success
  std::vector<std::pair<std::string, std::string>> lowered_names;  // name expression, lowered
  // Not stored: how this value was obtained.
  bool from_store = false;
  double seconds = 0;  // compile time, or store read time when from_store

  // The lowered (mangled) name for a name expression; Error when it was not compiled.
  const std::string& lowered_name(const std::string& name_expression) const;
};

}  // namespace q4jit
