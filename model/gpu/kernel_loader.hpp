// The kernels one engine runs, compiled through the kernel service (the store first, so a warm
// start compiles nothing) and loaded once: each distinct request is loaded on first use and kept.
// Not here: which configuration to use (the op launchers and the matmul dispatch decide).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"

namespace q4jit {

class KernelLoader {
 public:
  KernelLoader(Backend& backend, KernelService& service);

  const CompileTarget& target() const { return target_; }
  Backend& backend() { return backend_; }
  KernelService& service() { return service_; }

  // The function `name_expression` of the program `request` (compiled or read from the store
  // once). Error naming the family and configuration when the compile fails.
  const Function& function(const CompileRequest& request, const std::string& name_expression);
  // The kernel `variant` of `family`, compiled alone in its program.
  const Function& function(const KernelFamily& family, const KernelVariant& variant);
  // Compiles the requests not loaded yet on the service's thread pool, then loads them.
  void preload(const std::vector<CompileRequest>& requests, int jobs);

 private:
  static std::string key_of(const CompileRequest& request);
  const LoadedModule& load(const CompileRequest& request, const CompiledKernel* compiled);

  Backend& backend_;
  KernelService& service_;
  CompileTarget target_;
  std::map<std::string, std::unique_ptr<LoadedModule>> modules_;
};

}  // namespace q4jit
