// Compile batching, loading and launching of the q4_matmul family (q4_matmul_runner.hpp).
#include "tuner/q4_matmul_runner.hpp"

#include <map>

namespace q4jit {

namespace {

// The distinct kernel name expressions of `configs` in first-seen order (xp shares xs's kernel).
std::vector<std::string> distinct_expressions(const std::vector<Q4MatmulConfig>& configs) {
  std::vector<std::string> expressions;
  std::map<std::string, bool> seen;
  for (const Q4MatmulConfig& cfg : configs) {
    if (!seen[name_expression(cfg)]) {
      seen[name_expression(cfg)] = true;
      expressions.push_back(name_expression(cfg));
    }
  }
  return expressions;
}

}  // namespace

std::vector<CompileRequest> q4_matmul_requests(const std::vector<Q4MatmulConfig>& configs,
                                               const CompileTarget& target, int per_program) {
  const KernelFamily family = q4_matmul_family();
  const KernelSource source = embedded_kernel_source(family.source);
  const std::vector<std::string> expressions = distinct_expressions(configs);
  std::vector<CompileRequest> requests;
  for (size_t first = 0; first < expressions.size(); first += std::max(per_program, 1)) {
    CompileRequest request;
    request.family = family.name;
    request.source = source;
    request.target = target;
    const size_t end = std::min(expressions.size(), first + std::max(per_program, 1));
    request.name_expressions.assign(expressions.begin() + first, expressions.begin() + end);
    request.name_expressions.push_back(q4_gather_name_expression());
    // A program's config label: its kernel count and first kernel (the key hashes them all).
    request.config = "batch" + std::to_string(end - first) + "." + std::to_string(first);
    requests.push_back(std::move(request));
  }
  return requests;
}

std::vector<Result<Q4MatmulKernel>> load_q4_matmul(Backend& backend, KernelService& service,
                                                   const std::vector<Q4MatmulConfig>& configs,
                                                   int jobs) {
  const CompileTarget target =
      select_target(backend.current_device().sm(), service.compiler().supported_archs());
  // Few kernels per program: ptxas time dominates and one program compiles on one thread.
  const std::vector<CompileRequest> requests = q4_matmul_requests(configs, target, 4);
  std::vector<Result<CompiledKernel>> compiled = service.get_all(requests, jobs);

  std::map<std::string, Result<std::shared_ptr<const LoadedModule>>> modules;
  for (size_t i = 0; i < requests.size(); ++i) {
    Result<std::shared_ptr<const LoadedModule>> module =
        compiled[i].ok() ? Result<std::shared_ptr<const LoadedModule>>(nullptr)
                         : compiled[i].error();
    if (compiled[i].ok()) {
      try {
        module = std::make_shared<const LoadedModule>(backend.load_module(compiled[i].value()));
      } catch (const Error& error) {
        module = error;
      }
    }
    for (const std::string& expression : requests[i].name_expressions)
      modules.emplace(expression, module);
  }
  std::vector<Result<Q4MatmulKernel>> kernels;
  for (const Q4MatmulConfig& cfg : configs) {
    const auto& module = modules.at(name_expression(cfg));
    if (!module.ok()) {
      kernels.push_back(Error(to_string(cfg) + ": " + module.error().what())
                            .with("detail", module.error().describe()));
      continue;
    }
    const std::shared_ptr<const LoadedModule>& loaded = module.value();
    kernels.push_back(Q4MatmulKernel{cfg, loaded, loaded->function(name_expression(cfg)),
                                     loaded->function(q4_gather_name_expression())});
  }
  return kernels;
}

void launch_q4_matmul(Backend& backend, const Q4MatmulKernel& kernel, const Q4MatmulShape& shape,
                      const Q4MatmulOperands& operands, StreamView stream) {
  const Q4MatmulGeometry grid = geometry(kernel.config, shape, backend.current_device().sm_count);
  const Q4MatmulWorkspace layout = workspace(kernel.config, shape);
  const int M = static_cast<int>(shape.M), K = static_cast<int>(shape.K),
            N = static_cast<int>(shape.N);
  const int group_size = static_cast<int>(shape.group_size);
  uint64_t x = operands.x, x_map = shape.act_order ? operands.x_map : 0;
  if (kernel.config.x_staging == XStaging::pregather) {
    const uint64_t gathered = operands.workspace + layout.gathered_offset;
    LaunchGeometry gather;
    gather.grid = {grid.gather_grid_x, static_cast<unsigned>(M), 1};
    gather.block = {256, 1, 1};
    launch_kernel(backend, kernel.gather, gather, stream, gathered, x, x_map, K);
    x = gathered;
    x_map = 0;
  }
  LaunchGeometry matmul;
  matmul.grid = {grid.grid_x, grid.grid_y, 1};
  matmul.block = {grid.block_x, 1, 1};
  const uint64_t reduction = operands.workspace + layout.reduction_offset;
  const uint64_t counters = operands.workspace + layout.counters_offset;
  launch_kernel(backend, kernel.matmul, matmul, stream, operands.out, reduction, counters, x, x_map,
                operands.qweight, operands.scales, operands.qzeros, M, K, N, group_size);
}

KernelVariant q4_matmul_fused_variant(const Q4MatmulConfig& cfg, const Q4Fusion& fusion) {
  const char* inputs[] = {"direct", "norm", "silu"};
  return {
      to_string(cfg) + ".fused-" + inputs[int(fusion.input)] + (fusion.residual ? "-residual" : ""),
      fused_name_expression(cfg, fusion)};
}

void launch_q4_matmul_fused(Backend& backend, const Function& function, const Q4MatmulConfig& cfg,
                            const Q4MatmulShape& shape, const Q4MatmulOperands& operands,
                            const Q4FusionOperands& fusion, StreamView stream) {
  // xp's pregather is never needed: the norm input gathers itself, the others read in order.
  Q4JIT_CHECK(shape.M == 1 && fusable(cfg),
              to_string(cfg) + ": a fused launch needs M = 1 and a stream-K or tile configuration");
  const Q4MatmulGeometry grid = geometry(cfg, shape, backend.current_device().sm_count);
  const Q4MatmulWorkspace layout = workspace(cfg, shape);
  LaunchGeometry matmul;
  matmul.grid = {grid.grid_x, grid.grid_y, 1};
  matmul.block = {grid.block_x, 1, 1};
  const uint64_t reduction = operands.workspace + layout.reduction_offset;
  const uint64_t counters = operands.workspace + layout.counters_offset;
  launch_kernel(backend, function, matmul, stream, operands.out, reduction, counters, operands.x,
                shape.act_order ? operands.x_map : uint64_t(0), operands.qweight, operands.scales,
                operands.qzeros, int(shape.M), int(shape.K), int(shape.N), int(shape.group_size),
                fusion);
}

}  // namespace q4jit
