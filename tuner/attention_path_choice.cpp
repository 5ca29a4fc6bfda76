// Attention decisions read back for GpuOps (attention_path_choice.hpp).
#include "tuner/attention_path_choice.hpp"

#include <algorithm>

namespace q4jit {

namespace {

// Powers of two from `first` up to `last` (bounded so that a huge max_positions stays cheap).
std::vector<int> powers_of_two(int first, int64_t last) {
  std::vector<int> buckets;
  for (int64_t bucket = first; bucket <= std::min<int64_t>(last, int64_t(1) << 24); bucket *= 2)
    buckets.push_back(int(bucket));
  return buckets;
}

void read_prefill(const TuningDb& db, const DeviceFingerprint& fingerprint,
                  const DeviceInfo& device, const AttentionGeometry& geometry,
                  AttentionChoice& choice) {
  const std::string hash = attention_path_source_hash();
  for (int bucket : powers_of_two(kPrefillMinBucket, geometry.max_positions)) {
    const std::optional<DecisionRecord> decision =
        db.find_decision(attention_key(fingerprint, kAttentionPathFamily, hash, geometry, bucket));
    if (!decision) continue;
    const std::optional<PrefillChoice> parsed =
        parse_prefill_choice(decision->choice, decision->config);
    const AttentionPrefillShape shape{
        bucket, 0, geometry.heads, geometry.kv_heads, geometry.head_dim, 0, 0};
    if (parsed && parsed->legal(device, shape)) choice.prefill[bucket] = *parsed;
  }
}

void read_decode(const TuningDb& db, const DeviceFingerprint& fingerprint, const DeviceInfo& device,
                 const AttentionGeometry& geometry, AttentionChoice& choice) {
  const std::string hash = attention_split_source_hash();
  const std::map<int, AttentionDecodeConfig> configs = decode_split_configs(
      device, {geometry.heads, geometry.kv_heads, geometry.head_dim, geometry.max_positions});
  for (int bucket : powers_of_two(kDecodeMinBucket, geometry.max_positions)) {
    const std::optional<DecisionRecord> decision =
        db.find_decision(attention_key(fingerprint, kAttentionSplitFamily, hash, geometry, bucket));
    if (!decision) continue;
    const std::optional<int> split = parse_split_choice(decision->choice);
    if (split && configs.count(*split)) choice.decode_split[bucket] = *split;
  }
}

}  // namespace

AttentionChoice load_attention_choice(const TuningDb* db, const DeviceFingerprint& fingerprint,
                                      const DeviceInfo& device, const AttentionGeometry& geometry) {
  AttentionChoice choice;
  if (db == nullptr || db->read_only() || geometry.heads <= 0 || geometry.kv_heads <= 0 ||
      geometry.head_dim <= 0)
    return choice;
  read_prefill(*db, fingerprint, device, geometry, choice);
  read_decode(*db, fingerprint, device, geometry, choice);
  return choice;
}

}  // namespace q4jit
