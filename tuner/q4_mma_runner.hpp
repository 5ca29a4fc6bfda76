// Compiling, loading and launching the q4_mma family (the tensor-core q4 GEMM) on a Backend: what
// its test, benchmarks and the tuner share. Operands are q4_matmul's (same GPTQ layout and
// workspace convention). Not here: the kernels and legality (kernel_sources/q4_mma.hpp), timing
// (measure.hpp).
#pragma once

#include <memory>
#include <vector>

#include "kernel_sources/q4_mma.hpp"
#include "tuner/batch_loader.hpp"
#include "tuner/q4_matmul_runner.hpp"

namespace q4jit {

struct Q4MmaKernel {
  Q4MmaConfig config;
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

// The requests compiling the distinct kernels of `configs` for `target`, `per_program` each.
std::vector<CompileRequest> q4_mma_requests(const std::vector<Q4MmaConfig>& configs,
                                            const CompileTarget& target, int per_program);

// Compiles (store first) and loads every config; a config whose program failed is an Error.
std::vector<Result<Q4MmaKernel>> load_q4_mma(Backend& backend, KernelService& service,
                                             const std::vector<Q4MmaConfig>& configs, int jobs);

// Enqueues one product on `stream`. operands.workspace: workspace(cfg, shape).bytes, zero before
// its first use (each launch leaves it zero); x_map is used only when shape.act_order.
void launch_q4_mma(Backend& backend, const Q4MmaKernel& kernel, const Q4MmaShape& shape,
                   const Q4MatmulOperands& operands, StreamView stream);

}  // namespace q4jit
