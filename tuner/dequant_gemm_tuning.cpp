// The dequant_gemm pseudo-family: names, candidates, hash, winner requests
// (dequant_gemm_tuning.hpp).
#include "tuner/dequant_gemm_tuning.hpp"

#include <algorithm>
#include <map>

#include "common/sha256.hpp"
#include "tuner/gemm_runner.hpp"

namespace q4jit {

namespace {

template <typename Config>
std::map<std::string, Config> by_name(const std::vector<Config>& configs) {
  std::map<std::string, Config> names;
  for (const Config& cfg : configs) names.emplace(to_string(cfg), cfg);
  return names;
}

}  // namespace

std::string to_string(const DequantGemmConfig& cfg) {
  return to_string(cfg.dequantize) + "+" + to_string(cfg.gemm);
}

std::optional<DequantGemmConfig> parse_dequant_gemm(const std::string& text) {
  static const auto dequantize_names = by_name(dequantize_q4_configs());
  static const auto gemm_names = by_name(gemm_f16_configs());
  const size_t plus = text.find('+');
  if (plus == std::string::npos) return std::nullopt;
  const auto dequantize = dequantize_names.find(text.substr(0, plus));
  const auto gemm = gemm_names.find(text.substr(plus + 1));
  if (dequantize == dequantize_names.end() || gemm == gemm_names.end()) return std::nullopt;
  return DequantGemmConfig{dequantize->second, gemm->second};
}

std::vector<DequantGemmConfig> dequant_gemm_candidates(const DeviceInfo& device,
                                                       const MatmulShapeKey& shape, int bucket,
                                                       bool whole_gemm_space) {
  std::vector<DequantGemmConfig> candidates;
  const DequantizeConfig dequantize;
  if (!legal(dequantize, device, {shape.K, shape.N, shape.group_size})) return candidates;
  for (const GemmConfig& gemm : space(device, GemmShape{bucket, shape.K, shape.N})) {
    candidates.push_back({dequantize, gemm});
    if (!whole_gemm_space) break;
  }
  return candidates;
}

CandidateFootprint dequant_gemm_footprint(const DequantGemmConfig& cfg, const DeviceInfo& device,
                                          const MatmulShapeKey& shape, int bucket) {
  CandidateFootprint footprint;
  footprint.config = to_string(cfg);
  footprint.block_threads =
      std::max(cfg.dequantize.block_threads, 32 * cfg.gemm.warps_m * cfg.gemm.warps_n);
  footprint.smem_bytes = gemm_f16_smem_bytes(cfg.gemm);
  footprint.m_tile = 1;  // a GEMM tile larger than M only wastes work: it is a candidate still
  if (!legal(cfg.dequantize, device, {shape.K, shape.N, shape.group_size}) ||
      !legal(cfg.gemm, device, GemmShape{bucket, shape.K, shape.N})) {
    footprint.indivisible = "not legal for K " + std::to_string(shape.K) + ", N " +
                            std::to_string(shape.N) + " at M " + std::to_string(bucket);
  }
  return footprint;
}

std::string dequant_gemm_source_hash() {
  Sha256 hash;
  for (const KernelFamily& family : {dequantize_q4_family(), gemm_f16_family()}) {
    hash.update_field(family.name).update_field(family_source_hash(family));
  }
  return to_hex(hash.finish());
}

std::vector<CompileRequest> dequant_gemm_winner_requests(const DequantGemmConfig& cfg,
                                                         const CompileTarget& target) {
  return {batched_requests(dequantize_q4_family(), {name_expression(cfg.dequantize)}, target, 1)
              .front(),
          gemm_f16_requests({cfg.gemm}, target, 1).front()};
}

}  // namespace q4jit
