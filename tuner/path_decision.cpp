// Matmul path decisions (path_decision.hpp).
#include "tuner/path_decision.hpp"

#include "common/sha256.hpp"
#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

std::vector<MatmulPath> tuned_paths(int bucket, bool tensor_cores) {
  std::vector<MatmulPath> paths;
  if (bucket <= kGemvMaxBucket || !tensor_cores) paths.push_back(MatmulPath::gemv);
  if (tensor_cores && bucket >= kTensorCoreMinBucket) {
    paths.push_back(MatmulPath::mma);
    paths.push_back(MatmulPath::dequant_gemm);
  }
  return paths;
}

MatmulPath default_path(int64_t M, bool mma_available) {
  return M > MatmulChooser::kDefaultGemvMaxRows && mma_available ? MatmulPath::mma
                                                                 : MatmulPath::gemv;
}

std::string family_of(MatmulPath path) {
  switch (path) {
    case MatmulPath::gemv:
      return q4_matmul_family().name;
    case MatmulPath::mma:
      return q4_mma_family().name;
    case MatmulPath::dequant_gemm:
      return kDequantGemmFamily;
  }
  return "?";
}

std::optional<MatmulPath> path_of_family(const std::string& family) {
  for (MatmulPath path : {MatmulPath::gemv, MatmulPath::mma, MatmulPath::dequant_gemm}) {
    if (family_of(path) == family) return path;
  }
  return std::nullopt;
}

std::string matmul_path_source_hash() {
  Sha256 hash;
  for (const KernelFamily& family : {q4_matmul_family(), q4_mma_family()}) {
    hash.update_field(family.name).update_field(family_source_hash(family));
  }
  hash.update_field(kDequantGemmFamily).update_field(dequant_gemm_source_hash());
  return to_hex(hash.finish());
}

std::optional<DecisionRecord> decide_path(const std::vector<PathTiming>& timings,
                                          MatmulPath default_path, double required_gain) {
  const PathTiming* fastest = nullptr;
  const PathTiming* fallback = nullptr;
  DecisionRecord decision;
  decision.default_choice = to_string(default_path);
  for (const PathTiming& timing : timings) {
    if (!(timing.median_us > 0)) continue;
    decision.alternatives.emplace_back(to_string(timing.path), timing.median_us);
    if (!fastest || timing.median_us < fastest->median_us) fastest = &timing;
    if (timing.path == default_path) fallback = &timing;
  }
  if (!fastest) return std::nullopt;
  const PathTiming* chosen = fastest;
  if (fallback && fallback->median_us <= fastest->median_us * (1 + required_gain)) {
    chosen = fallback;
  }
  decision.choice = to_string(chosen->path);
  decision.config = chosen->config;
  decision.median_us = chosen->median_us;
  decision.default_us = fallback ? fallback->median_us : 0;
  return decision;
}

}  // namespace q4jit
