// Loading and launching gemm_f16 and dequantize_q4 (gemm_runner.hpp).
#include "tuner/gemm_runner.hpp"

namespace q4jit {

namespace {

// Loads `configs` of `family` as Kernel{config, module, function}, 3 kernels per program.
template <typename Kernel, typename Config>
std::vector<Result<Kernel>> load_family(Backend& backend, KernelService& service,
                                        const KernelFamily& family,
                                        const std::vector<Config>& configs, int jobs) {
  std::vector<std::string> expressions;
  for (const Config& cfg : configs) expressions.push_back(name_expression(cfg));
  const auto loaded = load_batched(backend, service, family, expressions, 3, jobs);
  std::vector<Result<Kernel>> kernels;
  for (const Config& cfg : configs) {
    const Result<LoadedVariant>& variant = loaded.at(name_expression(cfg));
    if (!variant.ok()) {
      kernels.push_back(Error(to_string(cfg) + ": " + variant.error().what())
                            .with("detail", variant.error().describe()));
    } else {
      kernels.push_back(Kernel{cfg, variant.value().module, variant.value().function});
    }
  }
  return kernels;
}

}  // namespace

std::vector<CompileRequest> gemm_f16_requests(const std::vector<GemmConfig>& configs,
                                              const CompileTarget& target, int per_program) {
  std::vector<std::string> expressions;
  for (const GemmConfig& cfg : configs) expressions.push_back(name_expression(cfg));
  return batched_requests(gemm_f16_family(), expressions, target, per_program);
}

std::vector<Result<GemmKernel>> load_gemm_f16(Backend& backend, KernelService& service,
                                              const std::vector<GemmConfig>& configs, int jobs) {
  return load_family<GemmKernel>(backend, service, gemm_f16_family(), configs, jobs);
}

std::vector<Result<DequantizeKernel>> load_dequantize_q4(
    Backend& backend, KernelService& service, const std::vector<DequantizeConfig>& configs,
    int jobs) {
  return load_family<DequantizeKernel>(backend, service, dequantize_q4_family(), configs, jobs);
}

void launch_gemm_f16(Backend& backend, const GemmKernel& kernel, const GemmShape& shape,
                     const GemmOperands& operands, StreamView stream) {
  const GemmGeometry grid = geometry(kernel.config, shape);
  const GemmWorkspace layout = workspace(kernel.config, shape);
  LaunchGeometry launch;
  launch.grid = {grid.grid_x, grid.grid_y, grid.grid_z};
  launch.block = {grid.block_x, 1, 1};
  launch.dynamic_smem_bytes = grid.dynamic_smem_bytes;
  launch_kernel(backend, kernel.function, launch, stream, operands.out, operands.workspace,
                operands.workspace + layout.counters_offset, operands.x, operands.weight,
                static_cast<int>(shape.M), static_cast<int>(shape.K), static_cast<int>(shape.N));
}

void launch_dequantize_q4(Backend& backend, const DequantizeKernel& kernel,
                          const DequantizeShape& shape, const DequantizeOperands& operands,
                          StreamView stream) {
  const DequantizeGeometry grid = geometry(kernel.config, shape);
  LaunchGeometry launch;
  launch.grid = {grid.grid_x, grid.grid_y, 1};
  launch.block = {grid.block_x, 1, 1};
  launch_kernel(backend, kernel.function, launch, stream, operands.weight, operands.qweight,
                operands.scales, operands.qzeros, operands.sorted_of, static_cast<int>(shape.K),
                static_cast<int>(shape.N), static_cast<int>(shape.group_size));
}

}  // namespace q4jit
