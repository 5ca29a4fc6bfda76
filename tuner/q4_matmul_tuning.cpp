// Footprints of q4_matmul candidates (q4_matmul_tuning.hpp).
#include "tuner/q4_matmul_tuning.hpp"

#include "tuner/q4_matmul_runner.hpp"

namespace q4jit {

std::vector<Q4MatmulConfig> q4_matmul_candidates(const Q4MatmulShape& shape) {
  std::vector<Q4MatmulConfig> candidates;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (cfg.x_staging == XStaging::pregather && !shape.act_order) continue;
    candidates.push_back(cfg);
  }
  return candidates;
}

int64_t q4_matmul_smem_bytes(const Q4MatmulConfig& cfg) {
  // staged: half2 [mb * ks/8 * 4] when x is staged; partial: float [warps][32 * cpt]; last_block.
  const bool staged = cfg.x_staging != XStaging::global;
  const int64_t staged_bytes = staged ? int64_t(cfg.rows_per_block) * (cfg.k_slice / 8) * 4 * 4 : 4;
  const int64_t partial_bytes = int64_t(cfg.block_threads / 32) * 32 * cfg.columns_per_thread * 4;
  return staged_bytes + partial_bytes + 4;
}

CandidateFootprint q4_matmul_footprint(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape) {
  CandidateFootprint footprint;
  footprint.config = to_string(cfg);
  footprint.block_threads = cfg.block_threads;
  footprint.smem_bytes = q4_matmul_smem_bytes(cfg);
  // Pruned below the rows it is legal for: mb for the block kernels, fewer for tile (mb 8 from 2).
  footprint.m_tile = cfg.tensor_dots > 0 ? int(min_rows(cfg)) : cfg.rows_per_block;
  if (shape.K <= 0 || shape.N <= 0 || shape.K % 8 != 0 || shape.N % 8 != 0) {
    footprint.indivisible = "K and N must be positive multiples of 8";
  } else if (shape.group_size <= 0 || shape.group_size % 8 != 0 ||
             shape.K % shape.group_size != 0) {
    footprint.indivisible = "group size " + std::to_string(shape.group_size) +
                            " must be a multiple of 8 dividing K " + std::to_string(shape.K);
  } else if (cfg.stream_rows > 0 && !batches_fit_groups(cfg, shape.group_size)) {
    footprint.indivisible = "batches of " + std::to_string(cfg.stream_rows) + " rows in " +
                            std::to_string(cfg.stream_groups) + " group(s) do not fit group size " +
                            std::to_string(shape.group_size);
  }
  return footprint;
}

const std::map<std::string, Q4MatmulConfig>& q4_matmul_configs_by_name() {
  static const std::map<std::string, Q4MatmulConfig> by_name = [] {
    std::map<std::string, Q4MatmulConfig> names;
    for (const Q4MatmulConfig& cfg : q4_matmul_configs()) names.emplace(to_string(cfg), cfg);
    return names;
  }();
  return by_name;
}

CompileRequest q4_matmul_winner_request(const Q4MatmulConfig& cfg, const CompileTarget& target) {
  return q4_matmul_requests({cfg}, target, 1).front();
}

Result<std::string> record_winner_kernel(KernelService& service, const Q4MatmulConfig& cfg,
                                         const CompileTarget& target) {
  Result<CompiledKernel> kernel = service.get(q4_matmul_winner_request(cfg, target));
  if (!kernel.ok()) return kernel.error();
  return kernel.value().key;
}

}  // namespace q4jit
