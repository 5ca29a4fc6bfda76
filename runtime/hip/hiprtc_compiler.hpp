// The hiprtc implementation of Compiler: compiles a CompileRequest for an AMD target (gfx90a...)
// to a code object that hipModuleLoadData loads, with the lowered names of its name expressions.
// Needs no GPU. Refuses, before hiprtc sees them, architectures outside runtime/hip/hip_archs.hpp
// (hiprtc 5.2 aborts the process on some). The store key holds the HIP version (description(),
// headers_version()), so a HIP upgrade recompiles. Safe across threads because compiles take
// turns: hiprtc 5.2.3 compiling on two threads at once once aborted the process minutes into a
// run ("LLVM ERROR: inconsistency in registered CommandLine options", another time "malloc():
// unaligned tcache chunk detected"), though short stress runs passed.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/compiler.hpp"
#include "runtime/hip/hip_library.hpp"

namespace q4jit {

class HiprtcCompiler final : public Compiler {
 public:
  // Error when libamdhip64 or hiprtc cannot be opened; the message says which and where.
  static Result<std::unique_ptr<Compiler>> open();

  std::string platform() const override { return "hip"; }
  std::string description() const override;  // "hiprtc (HIP 5.2.21153)"
  std::string version_tag() const override;  // "hip5-2"
  // None: NVIDIA architectures only. AMD ones are names, listed by hip_arch_list().
  std::vector<int> supported_archs() const override { return {}; }
  std::string headers_version() const override;  // "HIP_VERSION 50221153": hiprtc's own headers
  std::string headers_dir() const override;      // where hiprtc was found (it embeds its headers)
  // Error for a target that is not AMD or that hip_archs.hpp refuses.
  std::vector<std::string> key_options(const CompileRequest& request) const override;
  Result<CompiledKernel> compile(const CompileRequest& request) const override;

 private:
  HiprtcCompiler() = default;
  std::unique_ptr<HipLibrary> hip_;  // declared first: hiprtc_ may point into it
  std::unique_ptr<HiprtcLibrary> hiprtc_;
  mutable std::mutex compile_mutex_;  // one hiprtc program at a time (see above)
};

}  // namespace q4jit
