// The NVRTC implementation of Compiler: finds the CUDA headers at run time, builds the options in
// one place, compiles a CompileRequest to a CUBIN (or PTX) with the lowered names of its name
// expressions. Needs no GPU. Safe across threads: each compile is its own NVRTC program.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/compiler.hpp"
#include "runtime/cuda/nvrtc_library.hpp"

namespace q4jit {

class NvrtcCompiler final : public Compiler {
 public:
  // Error when NVRTC or the CUDA headers (cuda_fp16.h) cannot be found; the message lists where.
  static Result<std::unique_ptr<Compiler>> open();

  std::string description() const override;
  std::string version_tag() const override;
  std::vector<int> supported_archs() const override { return archs_; }
  std::string headers_version() const override { return headers_version_; }
  std::string headers_dir() const override { return include_dir_.string(); }
  std::vector<std::string> key_options(const CompileRequest& request) const override;
  Result<CompiledKernel> compile(const CompileRequest& request) const override;

 private:
  NvrtcCompiler() = default;
  std::unique_ptr<NvrtcLibrary> nvrtc_;
  int major_ = 0;
  int minor_ = 0;
  std::vector<int> archs_;
  std::filesystem::path include_dir_;
  std::string headers_version_;
};

}  // namespace q4jit
