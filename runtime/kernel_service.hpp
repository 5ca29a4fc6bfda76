// The compiler service: a CompileRequest becomes a CompiledKernel from the kernel store when it is
// there, else from the compiler (then stored). Many requests compile at once on a thread pool.
// Counters record compiles, store hits and misses and seconds, for tests and --verbose.
// Loading onto a device is Backend::load_module; this service needs no GPU.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "cache/kernel_store.hpp"
#include "kernel_sources/family.hpp"
#include "runtime/compiler.hpp"

namespace q4jit {

struct KernelServiceOptions {
  // Q4JIT_ASSERT_NO_COMPILE=1: any real compile is an Error (proves a warm start compiles nothing).
  bool assert_no_compile = false;
  static KernelServiceOptions from_environment();
};

struct KernelCounters {
  int64_t compiles = 0;  // real compiles that succeeded
  int64_t failures = 0;  // compiles that failed (or were refused by assert_no_compile)
  int64_t store_hits = 0;
  int64_t store_misses = 0;  // absent or corrupt entries
  double compile_seconds = 0;
  double store_seconds = 0;  // reading and validating hits

  // "compiles 3 (1.24 s), failures 0, store hits 2 (0.001 s), misses 3"
  std::string summary() const;
};

class KernelService {
 public:
  // store may be null: compile every time, store nothing.
  KernelService(const Compiler& compiler, const KernelStore* store,
                KernelServiceOptions options = KernelServiceOptions::from_environment());

  Result<CompiledKernel> get(const CompileRequest& request);
  // Results in the order of `requests`, computed on `jobs` threads.
  std::vector<Result<CompiledKernel>> get_all(const std::vector<CompileRequest>& requests,
                                              int jobs);

  KernelCounters counters() const;
  const Compiler& compiler() const { return compiler_; }

 private:
  Result<CompiledKernel> compile_and_store(const CompileRequest& request, const std::string& key);
  const Compiler& compiler_;
  const KernelStore* store_;
  KernelServiceOptions options_;
  std::atomic<int64_t> compiles_{0}, failures_{0}, hits_{0}, misses_{0};
  std::atomic<int64_t> compile_microseconds_{0}, store_microseconds_{0};
};

// The target `expression` of `family` compiles for: `target`, made architecture-specific ("sm_90a")
// when the expression needs it (KernelFamily::arch_specific_prefix) and the target is that
// architecture's CUBIN.
CompileTarget target_for_expression(const KernelFamily& family, const std::string& expression,
                                    const CompileTarget& target);

// The request compiling one variant of a family for a target (target_for_expression applied).
CompileRequest make_request(const KernelFamily& family, const KernelVariant& variant,
                            const CompileTarget& target);

}  // namespace q4jit
