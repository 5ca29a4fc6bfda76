// The interface of a source-to-binary compiler (NVRTC in runtime/cuda/nvrtc_compiler.hpp, hiprtc
// in runtime/hip/hiprtc_compiler.hpp). Needs no GPU. Implementations are safe to call from several
// threads at once.
#pragma once

#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/compile_types.hpp"

namespace q4jit {

class Compiler {
 public:
  virtual ~Compiler() = default;

  // The Backend::platform() whose binaries it makes: "cuda" (NVRTC) or "hip" (hiprtc).
  virtual std::string platform() const { return "cuda"; }
  // "NVRTC 13.0"
  virtual std::string description() const = 0;
  // Version for store file names and keys: "13-0".
  virtual std::string version_tag() const = 0;
  // Architectures it can emit, ascending: {75, 80, ..., 120}.
  virtual std::vector<int> supported_archs() const = 0;
  // Version of the platform headers the kernels compile against ("13000" from cuda.h).
  virtual std::string headers_version() const = 0;
  // Where those headers were found (for `q4jit devices`).
  virtual std::string headers_dir() const = 0;
  // The options that determine the binary (no machine-specific paths), for the store key.
  virtual std::vector<std::string> key_options(const CompileRequest& request) const = 0;
  // Compiles; a failure is a value whose Error context holds the log, options and config.
  virtual Result<CompiledKernel> compile(const CompileRequest& request) const = 0;
};

}  // namespace q4jit
