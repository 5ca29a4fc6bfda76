// Pruning before and after compiling (candidates.hpp).
#include "tuner/candidates.hpp"

namespace q4jit {

namespace {

CandidateVerdict judge(const CandidateFootprint& footprint, const DeviceInfo& device,
                       int m_bucket) {
  const std::string& config = footprint.config;
  if (device.max_threads_per_block > 0 && footprint.block_threads > device.max_threads_per_block) {
    return {config, TrialStatus::pruned_threads,
            std::to_string(footprint.block_threads) + " threads per block, the device allows " +
                std::to_string(device.max_threads_per_block)};
  }
  const int64_t smem_limit = std::max(device.smem_per_block_optin, device.smem_per_block);
  if (smem_limit > 0 && footprint.smem_bytes > smem_limit) {
    return {config, TrialStatus::pruned_smem,
            std::to_string(footprint.smem_bytes) + " bytes of shared memory, opt-in limit " +
                std::to_string(smem_limit)};
  }
  if (!footprint.indivisible.empty()) {
    return {config, TrialStatus::pruned_divisibility, footprint.indivisible};
  }
  if (footprint.m_tile > m_bucket) {
    return {config, TrialStatus::pruned_m_tile,
            "M tile " + std::to_string(footprint.m_tile) + " > bucket " + std::to_string(m_bucket)};
  }
  return {config, TrialStatus::ok, ""};
}

}  // namespace

std::vector<CandidateVerdict> prune_before_compile(const std::vector<CandidateFootprint>& space,
                                                   const DeviceInfo& device, int m_bucket) {
  std::vector<CandidateVerdict> verdicts;
  verdicts.reserve(space.size());
  for (const CandidateFootprint& footprint : space) {
    verdicts.push_back(judge(footprint, device, m_bucket));
  }
  return verdicts;
}

std::optional<CandidateVerdict> prune_after_compile(const std::string& config,
                                                    const FunctionAttributes& attributes,
                                                    int max_active_blocks_per_sm,
                                                    const PostCompileLimits& limits) {
  if (attributes.local_bytes > limits.local_bytes_limit) {
    return CandidateVerdict{config, TrialStatus::pruned_spills,
                            std::to_string(attributes.local_bytes) +
                                " bytes of local memory per thread (limit " +
                                std::to_string(limits.local_bytes_limit) + ")"};
  }
  if (max_active_blocks_per_sm <= 0) {
    return CandidateVerdict{config, TrialStatus::pruned_occupancy,
                            "no block fits on an SM (" + std::to_string(attributes.registers) +
                                " registers per thread)"};
  }
  return std::nullopt;
}

}  // namespace q4jit
