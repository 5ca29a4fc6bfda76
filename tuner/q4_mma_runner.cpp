// Compile batching, loading and launching of the q4_mma family (q4_mma_runner.hpp).
#include "tuner/q4_mma_runner.hpp"

namespace q4jit {

namespace {

std::vector<std::string> expressions_of(const std::vector<Q4MmaConfig>& configs) {
  std::vector<std::string> expressions;
  for (const Q4MmaConfig& cfg : configs) expressions.push_back(name_expression(cfg));
  return expressions;
}

}  // namespace

std::vector<CompileRequest> q4_mma_requests(const std::vector<Q4MmaConfig>& configs,
                                            const CompileTarget& target, int per_program) {
  return batched_requests(q4_mma_family(), expressions_of(configs), target, per_program);
}

std::vector<Result<Q4MmaKernel>> load_q4_mma(Backend& backend, KernelService& service,
                                             const std::vector<Q4MmaConfig>& configs, int jobs) {
  // Few kernels per program: ptxas dominates, and one program compiles on one thread.
  const auto loaded =
      load_batched(backend, service, q4_mma_family(), expressions_of(configs), 3, jobs);
  std::vector<Result<Q4MmaKernel>> kernels;
  for (const Q4MmaConfig& cfg : configs) {
    const Result<LoadedVariant>& variant = loaded.at(name_expression(cfg));
    if (!variant.ok()) {
      kernels.push_back(Error(to_string(cfg) + ": " + variant.error().what())
                            .with("detail", variant.error().describe()));
    } else {
      kernels.push_back(Q4MmaKernel{cfg, variant.value().module, variant.value().function});
    }
  }
  return kernels;
}

void launch_q4_mma(Backend& backend, const Q4MmaKernel& kernel, const Q4MmaShape& shape,
                   const Q4MatmulOperands& operands, StreamView stream) {
  const Q4MmaGeometry grid = geometry(kernel.config, shape);
  const Q4MmaWorkspace layout = workspace(kernel.config, shape);
  LaunchGeometry launch;
  launch.grid = {grid.grid_x, grid.grid_y, grid.grid_z};
  launch.block = {grid.block_x, 1, 1};
  launch.dynamic_smem_bytes = grid.dynamic_smem_bytes;
  const uint64_t x_map = shape.act_order ? operands.x_map : 0;
  launch_kernel(backend, kernel.function, launch, stream, operands.out, operands.workspace,
                operands.workspace + layout.counters_offset, operands.x, x_map, operands.qweight,
                operands.scales, operands.qzeros, static_cast<int>(shape.M),
                static_cast<int>(shape.K), static_cast<int>(shape.N),
                static_cast<int>(shape.group_size));
}

}  // namespace q4jit
