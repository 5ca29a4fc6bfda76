// Attention path and split decisions (attention_path.hpp).
#include "tuner/attention_path.hpp"

#include <algorithm>

#include "common/sha256.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

std::string to_string(AttentionPrefillPath path) {
  return path == AttentionPrefillPath::simt ? "simt" : "mma";
}

std::optional<AttentionPrefillPath> parse_attention_prefill_path(const std::string& text) {
  for (AttentionPrefillPath path : {AttentionPrefillPath::simt, AttentionPrefillPath::mma}) {
    if (to_string(path) == text) return path;
  }
  return std::nullopt;
}

std::string PrefillChoice::config() const {
  return path == AttentionPrefillPath::simt ? to_string(simt) : to_string(mma);
}

bool PrefillChoice::legal(const DeviceInfo& device, const AttentionPrefillShape& shape) const {
  return path == AttentionPrefillPath::simt ? q4jit::legal(simt, device, shape)
                                            : q4jit::legal(mma, device, shape);
}

namespace {

PrefillChoice simt_choice(const AttentionPrefillConfig& cfg) {
  PrefillChoice choice;
  choice.path = AttentionPrefillPath::simt;
  choice.simt = cfg;
  return choice;
}

PrefillChoice mma_choice(const AttentionPrefillMmaConfig& cfg) {
  PrefillChoice choice;
  choice.path = AttentionPrefillPath::mma;
  choice.mma = cfg;
  return choice;
}

}  // namespace

std::optional<PrefillChoice> default_prefill(const DeviceInfo& device,
                                             const AttentionPrefillShape& shape) {
  const std::vector<AttentionPrefillMmaConfig> mma = attention_prefill_mma_space(device, shape);
  if (!mma.empty()) return mma_choice(mma.front());
  const std::vector<AttentionPrefillConfig> simt = space(device, shape);
  if (!simt.empty()) return simt_choice(simt.front());
  return std::nullopt;
}

std::vector<PrefillChoice> prefill_candidates(const DeviceInfo& device,
                                              const AttentionPrefillShape& shape) {
  std::vector<PrefillChoice> candidates;
  const std::optional<PrefillChoice> fallback = default_prefill(device, shape);
  if (!fallback) return candidates;
  candidates.push_back(*fallback);
  const auto add = [&](const PrefillChoice& choice) {
    if (choice.path != fallback->path || choice.config() != fallback->config())
      candidates.push_back(choice);
  };
  for (const AttentionPrefillMmaConfig& cfg : attention_prefill_mma_space(device, shape))
    add(mma_choice(cfg));
  for (const AttentionPrefillConfig& cfg : space(device, shape)) add(simt_choice(cfg));
  return candidates;
}

std::optional<PrefillChoice> parse_prefill_choice(const std::string& path,
                                                  const std::string& config) {
  const std::optional<AttentionPrefillPath> parsed = parse_attention_prefill_path(path);
  if (!parsed) return std::nullopt;
  if (*parsed == AttentionPrefillPath::mma) {
    for (const AttentionPrefillMmaConfig& cfg : attention_prefill_mma_configs()) {
      if (to_string(cfg) == config) return mma_choice(cfg);
    }
    return std::nullopt;
  }
  for (const AttentionPrefillConfig& cfg : attention_prefill_configs()) {
    if (to_string(cfg) == config) return simt_choice(cfg);
  }
  return std::nullopt;
}

std::map<int, AttentionDecodeConfig> decode_split_configs(const DeviceInfo& device,
                                                          const AttentionDecodeShape& shape) {
  const auto preferred = [](const AttentionDecodeConfig& cfg) {
    return cfg.threads == 256 && cfg.heads_per_block <= 2;
  };
  std::map<int, AttentionDecodeConfig> configs;
  for (const AttentionDecodeConfig& cfg : space(device, shape)) {
    auto [found, added] = configs.emplace(cfg.split, cfg);
    if (!added && preferred(cfg) &&
        (!preferred(found->second) || cfg.heads_per_block > found->second.heads_per_block))
      found->second = cfg;
  }
  return configs;
}

int default_decode_split(const std::map<int, AttentionDecodeConfig>& configs, int64_t heads,
                         int sm_count, int64_t length) {
  const int64_t block_limit = 4 * int64_t(sm_count);
  int split = 0;
  for (const auto& [size, cfg] : configs) {
    split = size;
    const int64_t splits = (length + size - 1) / size;
    if (splits * (heads / cfg.heads_per_block) <= block_limit) break;
  }
  return split;
}

std::string split_choice(int split) {
  return "sp" + std::to_string(split);
}

std::optional<int> parse_split_choice(const std::string& text) {
  if (!text.starts_with("sp") || text.size() < 3 || text.size() > 9) return std::nullopt;
  int split = 0;
  for (char c : text.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    split = split * 10 + (c - '0');
  }
  if (split <= 0) return std::nullopt;
  return split;
}

std::vector<int> attention_prefill_buckets(const std::vector<int>& m_buckets,
                                           int64_t max_positions) {
  std::vector<int> buckets;
  for (int bucket : m_buckets) {
    if (bucket >= kPrefillMinBucket && bucket <= max_positions) buckets.push_back(bucket);
  }
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  return buckets;
}

std::vector<int> attention_decode_buckets(int64_t max_positions) {
  std::vector<int> buckets;
  for (int bucket = kDecodeMinBucket; bucket <= kDecodeMaxBucket && bucket <= max_positions;
       bucket *= 2)
    buckets.push_back(bucket);
  return buckets;
}

std::vector<int64_t> attention_prefixes(int64_t T, int64_t max_positions) {
  std::vector<int64_t> prefixes = {0};
  const int64_t longer = std::min<int64_t>(kLongPrefix, max_positions - T);
  if (longer > 0) prefixes.push_back(longer);
  return prefixes;
}

std::string attention_path_source_hash() {
  Sha256 hash;
  hash.update_field(kAttentionPathFamily);
  for (const KernelFamily& family : {attention_prefill_family(), attention_prefill_mma_family()})
    hash.update_field(family.name).update_field(family_source_hash(family));
  return to_hex(hash.finish());
}

std::string attention_split_source_hash() {
  const KernelFamily family = attention_decode_family();
  Sha256 hash;
  hash.update_field(kAttentionSplitFamily);
  hash.update_field(family.name).update_field(family_source_hash(family));
  return to_hex(hash.finish());
}

TuningKey attention_key(const DeviceFingerprint& device, const std::string& family,
                        const std::string& source_hash, const AttentionGeometry& geometry,
                        int bucket) {
  return make_tuning_key(device, family, source_hash,
                         {geometry.head_dim, geometry.heads, geometry.kv_heads, false}, bucket);
}

std::optional<DecisionRecord> decide_attention(const std::vector<AttentionTiming>& timings,
                                               const std::string& default_choice,
                                               const std::string& default_config,
                                               double required_gain) {
  const AttentionTiming* fastest = nullptr;
  const AttentionTiming* fallback = nullptr;
  DecisionRecord decision;
  decision.default_choice = default_choice;
  for (const AttentionTiming& timing : timings) {
    if (!(timing.us > 0)) continue;
    auto best = std::find_if(decision.alternatives.begin(), decision.alternatives.end(),
                             [&](const auto& item) { return item.first == timing.choice; });
    if (best == decision.alternatives.end()) {
      decision.alternatives.emplace_back(timing.choice, timing.us);
    } else {
      best->second = std::min(best->second, timing.us);
    }
    if (!fastest || timing.us < fastest->us) fastest = &timing;
    if (timing.choice == default_choice && timing.config == default_config) fallback = &timing;
  }
  if (!fastest) return std::nullopt;
  const AttentionTiming* chosen = fastest;
  if (fallback && fallback->us <= fastest->us * (1 + required_gain)) chosen = fallback;
  decision.choice = chosen->choice;
  decision.config = chosen->config;
  decision.median_us = chosen->us;
  decision.default_us = fallback ? fallback->us : 0;
  return decision;
}

}  // namespace q4jit
