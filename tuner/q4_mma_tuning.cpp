// Footprints, names and the winner request of q4_mma (q4_mma_tuning.hpp).
#include "tuner/q4_mma_tuning.hpp"

#include "tuner/q4_mma_runner.hpp"

namespace q4jit {

CandidateFootprint q4_mma_footprint(const Q4MmaConfig& cfg, const DeviceInfo& device,
                                    const Q4MmaShape& shape) {
  CandidateFootprint footprint;
  footprint.config = to_string(cfg);
  footprint.block_threads = 32 * cfg.warps_n * cfg.warps_k;
  footprint.smem_bytes = q4_mma_smem_bytes(cfg);
  footprint.m_tile = cfg.tile_m;
  // Threads and shared memory are checked first by the pruning, so what legal() still refuses
  // is the shape: K, N or group size, splits beyond the K-tiles, or an older GPU.
  if (!legal(cfg, device, shape)) {
    footprint.indivisible = "not legal for K " + std::to_string(shape.K) + ", N " +
                            std::to_string(shape.N) + ", group size " +
                            std::to_string(shape.group_size) + " on sm_" +
                            std::to_string(device.sm());
  }
  return footprint;
}

const std::map<std::string, Q4MmaConfig>& q4_mma_configs_by_name() {
  static const std::map<std::string, Q4MmaConfig> by_name = [] {
    std::map<std::string, Q4MmaConfig> names;
    for (const Q4MmaConfig& cfg : q4_mma_configs()) names.emplace(to_string(cfg), cfg);
    return names;
  }();
  return by_name;
}

CompileRequest q4_mma_winner_request(const Q4MmaConfig& cfg, const CompileTarget& target) {
  return q4_mma_requests({cfg}, target, 1).front();
}

}  // namespace q4jit
