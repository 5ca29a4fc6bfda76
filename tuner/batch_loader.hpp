// Compiling many variants of one kernel family in few NVRTC programs (several name expressions
// per request: the front end runs once per program) and loading them on a Backend. Shared by the
// tensor-core families' runners (q4_mma_runner, gemm_runner), their tests and benchmarks.
// Not here: which variants to build (the families' descriptors), launching, timing.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"

namespace q4jit {

// One kernel of a loaded program (the module is shared by the kernels compiled together).
struct LoadedVariant {
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

// The requests compiling `expressions` of `family` for `target`, at most `per_program` each,
// labelled "batch<count>.<first index>" (the store key hashes the expressions themselves).
std::vector<CompileRequest> batched_requests(const KernelFamily& family,
                                             const std::vector<std::string>& expressions,
                                             const CompileTarget& target, int per_program);

// Compiles (store first) on `jobs` threads and loads every distinct expression; an expression
// whose program failed to compile or load maps to that Error.
std::map<std::string, Result<LoadedVariant>> load_batched(
    Backend& backend, KernelService& service, const KernelFamily& family,
    const std::vector<std::string>& expressions, int per_program, int jobs);

}  // namespace q4jit
