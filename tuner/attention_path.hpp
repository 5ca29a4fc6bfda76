// Which attention kernel runs a model's attention geometry, decided from measured times: for
// prefill, per row bucket T, the path (the SIMT attention_prefill family or the tensor-core
// attention_prefill_mma) and its configuration; for decode, per length bucket, the split size of
// attention_decode (positions per block). The default is today's rule (prefill: the first legal
// mma configuration, else the first legal SIMT one; decode: the smallest split whose blocks stay
// within 4 per SM), kept unless another candidate beats it by more than 2%.
// Decisions live in the tuning database's decisions table, keyed like a matmul problem:
//   family      "attention_path" (prefill) or "attention_split" (decode)
//   K           head_dim D          N           heads H
//   group_size  kv heads Hkv        act_order   false
//   m_bucket    T bucket (prefill) or length bucket (decode)      dtype "f16"
//   source_hash over attention_prefill + attention_prefill_mma (prefill), attention_decode (decode)
//   choice      "simt" or "mma"; "sp128" (decode)   config  the family's config string
// A prefill time is the sum over the prefixes a chunked prefill has (attention_prefixes).
// Pure: no GPU, no database here (attention_path_tuner.hpp measures and stores,
// attention_path_choice.hpp reads, model/gpu/gpu_ops.cpp launches).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "kernel_sources/attention_decode.hpp"
#include "kernel_sources/attention_prefill.hpp"
#include "kernel_sources/attention_prefill_mma.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

inline constexpr const char* kAttentionPathFamily = "attention_path";
inline constexpr const char* kAttentionSplitFamily = "attention_split";
// Prefill buckets from 2 rows (one row is a decode step); decode lengths from 64 (below, every
// split is one block per head group) up to kDecodeMaxBucket (longer lengths keep the rule).
inline constexpr int kPrefillMinBucket = 2;
inline constexpr int kDecodeMinBucket = 64;
inline constexpr int kDecodeMaxBucket = 8192;
// The longer prefix a prefill bucket is timed at besides 0: the last chunk of a 2k prompt in
// 512-row chunks starts at 1536.
inline constexpr int kLongPrefix = 1536;

// A model's attention: what every attention decision is keyed by, and how far it may reach.
struct AttentionGeometry {
  int64_t heads = 0;          // H
  int64_t kv_heads = 0;       // Hkv, divides H
  int64_t head_dim = 0;       // D
  int64_t max_positions = 0;  // the KV cache's length: no bucket beyond it is decided
};

enum class AttentionPrefillPath {
  simt,  // attention_prefill
  mma,   // attention_prefill_mma (NVIDIA sm_80+)
};
std::string to_string(AttentionPrefillPath path);  // "simt", "mma"
std::optional<AttentionPrefillPath> parse_attention_prefill_path(const std::string& text);

// One prefill kernel: the path and its configuration (the other path's field unused).
struct PrefillChoice {
  AttentionPrefillPath path = AttentionPrefillPath::mma;
  AttentionPrefillConfig simt;
  AttentionPrefillMmaConfig mma;

  std::string config() const;  // the chosen path's config string
  bool legal(const DeviceInfo& device, const AttentionPrefillShape& shape) const;
};

// What GpuOps runs where the tuner decided; a bucket without an entry keeps the rule.
struct AttentionChoice {
  std::map<int, PrefillChoice> prefill;  // T bucket -> path and configuration
  std::map<int, int> decode_split;       // length bucket -> split size
  bool empty() const { return prefill.empty() && decode_split.empty(); }
};

// Today's prefill kernel: the first legal mma configuration, else the first legal SIMT one;
// nullopt when neither family has a legal configuration.
std::optional<PrefillChoice> default_prefill(const DeviceInfo& device,
                                             const AttentionPrefillShape& shape);
// Every legal prefill kernel of the shape: the default first, then mma, then SIMT.
std::vector<PrefillChoice> prefill_candidates(const DeviceInfo& device,
                                              const AttentionPrefillShape& shape);
// The config string `config` of `path` as a choice, or nullopt when no such config exists.
std::optional<PrefillChoice> parse_prefill_choice(const std::string& path,
                                                  const std::string& config);

// The decode configurations GpuOps runs, one per split size: 256 threads and two query heads per
// block where the group allows (the fastest on the H100 at 4096 positions for 32 and 64 heads).
std::map<int, AttentionDecodeConfig> decode_split_configs(const DeviceInfo& device,
                                                          const AttentionDecodeShape& shape);
// Today's split at `length`: the smallest whose blocks stay within 4 per SM (short contexts still
// spread over the GPU, long ones combine few partials); the largest when none does. 0 when
// `configs` is empty.
int default_decode_split(const std::map<int, AttentionDecodeConfig>& configs, int64_t heads,
                         int sm_count, int64_t length);
std::string split_choice(int split);                             // "sp128"
std::optional<int> parse_split_choice(const std::string& text);  // inverse; nullopt otherwise

// The prefill buckets decided: each of `m_buckets` from kPrefillMinBucket up to max_positions,
// sorted, once each.
std::vector<int> attention_prefill_buckets(const std::vector<int>& m_buckets,
                                           int64_t max_positions);
// The decode length buckets decided: 64, 128, ... up to max_positions and kDecodeMaxBucket.
std::vector<int> attention_decode_buckets(int64_t max_positions);
// The first positions a T-row prefill is timed at: 0 and a longer prefix where the cache has
// room (kLongPrefix, less when max_positions - T is smaller).
std::vector<int64_t> attention_prefixes(int64_t T, int64_t max_positions);

// SHA-256 over the source hashes of the families each kind compares.
std::string attention_path_source_hash();   // attention_prefill, attention_prefill_mma
std::string attention_split_source_hash();  // attention_decode

// The decision key of `geometry` at `bucket` (K = D, N = H, group_size = Hkv, act_order false).
TuningKey attention_key(const DeviceFingerprint& device, const std::string& family,
                        const std::string& source_hash, const AttentionGeometry& geometry,
                        int bucket);

// One validated candidate's time (prefill: summed over the prefixes).
struct AttentionTiming {
  std::string choice;  // "simt", "mma"; "sp64"
  std::string config;
  double us = 0;
};

// The fastest candidate, unless the default (default_choice with default_config) is within
// required_gain of it. Alternatives: each choice's fastest time, in first-seen order. nullopt
// when no candidate has a positive time.
std::optional<DecisionRecord> decide_attention(const std::vector<AttentionTiming>& timings,
                                               const std::string& default_choice,
                                               const std::string& default_config,
                                               double required_gain = 0.02);

}  // namespace q4jit
