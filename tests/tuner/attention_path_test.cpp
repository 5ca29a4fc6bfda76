// The attention decisions' pure logic (tuner/attention_path.hpp) on recorded timing tables: the
// 2% rule, a crossover from the SIMT to the tensor-core path as T grows, decode splits; the
// candidates and defaults GpuOps would run on an H100-like and an sm_75 device; the buckets and
// prefixes decided; names, keys and source hashes. No GPU.
#include "tuner/attention_path.hpp"

#include <gtest/gtest.h>

#include <set>

#include "kernel_sources/attention_prefill_mma.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {
namespace {

DeviceInfo device_of(int sm, int sm_count = 132) {
  DeviceInfo device;
  device.name = "test sm_" + std::to_string(sm);
  device.cc_major = sm / 10;
  device.cc_minor = sm % 10;
  device.sm_count = sm_count;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = 227 * 1024;
  return device;
}

const AttentionPrefillShape k7bChunk{512, 0, 32, 32, 128, 96 * 128, 32 * 128};

TEST(AttentionDecision, DefaultKeptWithinTwoPercent) {
  const std::vector<AttentionTiming> timings = {{"mma", "d128.bq64.bk64.st2", 100.0},
                                                {"mma", "d128.bq128.bk64.st2", 98.5},
                                                {"simt", "d128.bq32.bk64.w4", 300.0}};
  const auto decision = decide_attention(timings, "mma", "d128.bq64.bk64.st2");
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->choice, "mma");
  EXPECT_EQ(decision->config, "d128.bq64.bk64.st2") << "98.5 is within 2% of 100";
  EXPECT_DOUBLE_EQ(decision->median_us, 100.0);
  EXPECT_DOUBLE_EQ(decision->default_us, 100.0);
  EXPECT_EQ(decision->default_choice, "mma");
  ASSERT_EQ(decision->alternatives.size(), 2u) << "one per path, its fastest";
  EXPECT_EQ(decision->alternatives[0].first, "mma");
  EXPECT_DOUBLE_EQ(decision->alternatives[0].second, 98.5);
  EXPECT_EQ(decision->alternatives[1].first, "simt");
  EXPECT_DOUBLE_EQ(decision->alternatives[1].second, 300.0);
}

TEST(AttentionDecision, BeatenByMoreThanTwoPercent) {
  const std::vector<AttentionTiming> timings = {{"mma", "d128.bq64.bk64.st2", 100.0},
                                                {"mma", "d128.bq128.bk64.st2", 97.9}};
  const auto decision = decide_attention(timings, "mma", "d128.bq64.bk64.st2");
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->config, "d128.bq128.bk64.st2");
  EXPECT_DOUBLE_EQ(decision->median_us, 97.9);
  EXPECT_DOUBLE_EQ(decision->default_us, 100.0);
  const auto stricter = decide_attention(timings, "mma", "d128.bq64.bk64.st2", 0.05);
  EXPECT_EQ(stricter->config, "d128.bq64.bk64.st2") << "a 5% rule keeps the default";
}

// A recorded table of prefill times per T bucket (us, summed over p0 0 and 1536): the SIMT kernel
// with 16-query blocks wins while T is small, the tensor cores from 32 rows on.
TEST(AttentionDecision, CrossoverFromSimtToMma) {
  struct Row {
    int T;
    double mma, simt;
  };
  const Row table[] = {{2, 30.0, 12.0},  {4, 31.0, 14.0},  {8, 32.0, 19.0},
                       {16, 33.0, 32.9}, {32, 35.0, 52.0}, {512, 410.0, 2900.0}};
  std::map<int, std::string> chosen;
  for (const Row& row : table) {
    const auto decision = decide_attention(
        {{"mma", "d128.bq64.bk64.st2", row.mma}, {"simt", "d128.bq16.bk64.w2", row.simt}}, "mma",
        "d128.bq64.bk64.st2");
    ASSERT_TRUE(decision) << row.T;
    chosen[row.T] = decision->choice;
  }
  EXPECT_EQ(chosen[2], "simt");
  EXPECT_EQ(chosen[4], "simt");
  EXPECT_EQ(chosen[8], "simt");
  EXPECT_EQ(chosen[16], "mma") << "33.0 vs 32.9: within 2%, the default stays";
  EXPECT_EQ(chosen[32], "mma");
  EXPECT_EQ(chosen[512], "mma");
}

TEST(AttentionDecision, WrongOrMissingTimesNeverWin) {
  EXPECT_FALSE(decide_attention({}, "mma", "x"));
  EXPECT_FALSE(decide_attention({{"mma", "x", 0.0}, {"simt", "y", -1.0}}, "mma", "x"));
  // The default failed validation (not timed): the fastest valid candidate wins, default_us 0.
  const auto decision =
      decide_attention({{"simt", "d64.bq16.bk32.w2", 9.0}, {"simt", "d64.bq32.bk64.w4", 7.0}},
                       "mma", "d64.bq64.bk64.st2");
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->config, "d64.bq32.bk64.w4");
  EXPECT_DOUBLE_EQ(decision->default_us, 0.0);
  EXPECT_EQ(decision->default_choice, "mma");
}

TEST(AttentionDecision, DecodeSplitTable) {
  // Recorded decode times at 4096 positions (us): 128 positions per block wins by 9%.
  const auto decision = decide_attention({{"sp64", "d128.sp64.t256.hb1", 40.0},
                                          {"sp128", "d128.sp128.t256.hb1", 31.3},
                                          {"sp256", "d128.sp256.t256.hb1", 34.4},
                                          {"sp512", "d128.sp512.t256.hb1", 45.0}},
                                         "sp256", "d128.sp256.t256.hb1");
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->choice, "sp128");
  EXPECT_EQ(parse_split_choice(decision->choice), 128);
  EXPECT_EQ(decision->alternatives.size(), 4u);
}

TEST(AttentionPrefill, DefaultIsTodaysRule) {
  const DeviceInfo h100 = device_of(90);
  const auto fallback = default_prefill(h100, k7bChunk);
  ASSERT_TRUE(fallback);
  EXPECT_EQ(fallback->path, AttentionPrefillPath::mma);
  EXPECT_EQ(fallback->config(), to_string(attention_prefill_mma_space(h100, k7bChunk).front()));
  const DeviceInfo turing = device_of(75);
  const auto older = default_prefill(turing, k7bChunk);
  ASSERT_TRUE(older);
  EXPECT_EQ(older->path, AttentionPrefillPath::simt) << "no mma.sync m16n8k16 before sm_80";
  EXPECT_EQ(older->config(), to_string(space(turing, k7bChunk).front()));
  EXPECT_FALSE(default_prefill(h100, {512, 0, 32, 32, 96, 0, 0})) << "head_dim 96: no family";
}

TEST(AttentionPrefill, CandidatesAreEveryLegalConfigOnceDefaultFirst) {
  const DeviceInfo h100 = device_of(90);
  const std::vector<PrefillChoice> candidates = prefill_candidates(h100, k7bChunk);
  EXPECT_EQ(candidates.size(),
            attention_prefill_mma_space(h100, k7bChunk).size() + space(h100, k7bChunk).size());
  ASSERT_FALSE(candidates.empty());
  EXPECT_EQ(candidates.front().config(), default_prefill(h100, k7bChunk)->config());
  std::set<std::string> seen;
  for (const PrefillChoice& choice : candidates) {
    EXPECT_TRUE(seen.insert(to_string(choice.path) + " " + choice.config()).second);
    EXPECT_TRUE(choice.legal(h100, k7bChunk)) << choice.config();
    const auto parsed = parse_prefill_choice(to_string(choice.path), choice.config());
    ASSERT_TRUE(parsed) << choice.config();
    EXPECT_EQ(parsed->path, choice.path);
    EXPECT_EQ(parsed->config(), choice.config());
  }
  for (const PrefillChoice& choice : prefill_candidates(device_of(75), k7bChunk))
    EXPECT_EQ(choice.path, AttentionPrefillPath::simt);
  EXPECT_FALSE(parse_prefill_choice("mma", "d128.bq32.bk64.w4")) << "a SIMT name as mma";
  EXPECT_FALSE(parse_prefill_choice("tensor", "d128.bq64.bk64.st2"));
  EXPECT_FALSE(parse_prefill_choice("simt", "d128.bq24.bk64.w4"));
  EXPECT_EQ(parse_attention_prefill_path("simt"), AttentionPrefillPath::simt);
  EXPECT_FALSE(parse_attention_prefill_path("SIMT"));
}

TEST(AttentionDecode, SplitConfigsAndTheRule) {
  const DeviceInfo h100 = device_of(90);
  const AttentionDecodeShape shape{32, 8, 128, 4096};
  const std::map<int, AttentionDecodeConfig> configs = decode_split_configs(h100, shape);
  ASSERT_EQ(configs.size(), 4u);
  for (const auto& [split, cfg] : configs) {
    EXPECT_EQ(cfg.split, split);
    EXPECT_EQ(cfg.threads, 256);
    EXPECT_EQ(cfg.heads_per_block, 2) << "two query heads of a group of four";
  }
  EXPECT_EQ(decode_split_configs(h100, {32, 32, 128, 4096}).at(64).heads_per_block, 1);
  // 16 blocks of heads; 4 x 132 = 528 blocks at most: 64-position splits up to 2112 positions.
  EXPECT_EQ(default_decode_split(configs, 32, 132, 100), 64);
  EXPECT_EQ(default_decode_split(configs, 32, 132, 2112), 64);
  EXPECT_EQ(default_decode_split(configs, 32, 132, 2113), 128);
  EXPECT_EQ(default_decode_split(configs, 32, 132, 8192), 256);
  EXPECT_EQ(default_decode_split(configs, 32, 132, 1 << 20), 512) << "none fits: the largest";
  EXPECT_EQ(default_decode_split({}, 32, 132, 100), 0);
  EXPECT_EQ(split_choice(128), "sp128");
  EXPECT_EQ(parse_split_choice("sp512"), 512);
  for (const char* bad : {"", "sp", "sp0", "128", "sp12a", "SP64", "sp99999999999"})
    EXPECT_FALSE(parse_split_choice(bad)) << bad;
}

TEST(AttentionBuckets, PrefillDecodeAndPrefixes) {
  EXPECT_EQ(attention_prefill_buckets({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}, 2048),
            (std::vector<int>{2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}));
  EXPECT_EQ(attention_prefill_buckets({512, 1, 16, 16, 4096}, 2048), (std::vector<int>{16, 512}))
      << "sorted, once each, none past the cache";
  EXPECT_EQ(attention_decode_buckets(2048), (std::vector<int>{64, 128, 256, 512, 1024, 2048}));
  EXPECT_EQ(attention_decode_buckets(100000).back(), kDecodeMaxBucket);
  EXPECT_EQ(attention_decode_buckets(3000).back(), 2048);
  EXPECT_TRUE(attention_decode_buckets(32).empty());
  EXPECT_EQ(attention_prefixes(512, 4096), (std::vector<int64_t>{0, 1536}));
  EXPECT_EQ(attention_prefixes(1024, 2048), (std::vector<int64_t>{0, 1024}));
  EXPECT_EQ(attention_prefixes(2048, 2048), (std::vector<int64_t>{0}));
}

TEST(AttentionKey, FieldsAndSourceHashes) {
  const DeviceFingerprint h100{"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
  const AttentionGeometry geometry{32, 8, 128, 4096};
  const TuningKey key = attention_key(h100, kAttentionPathFamily, "abc", geometry, 512);
  EXPECT_EQ(key.family, "attention_path");
  EXPECT_EQ(key.K, 128);
  EXPECT_EQ(key.N, 32);
  EXPECT_EQ(key.group_size, 8);
  EXPECT_FALSE(key.act_order);
  EXPECT_EQ(key.m_bucket, 512);
  EXPECT_EQ(key.dtype, "f16");
  EXPECT_EQ(attention_key(h100, kAttentionSplitFamily, "abc", geometry, 300).m_bucket, 512)
      << "lengths round up to their bucket";
  const std::string prefill = attention_path_source_hash(), decode = attention_split_source_hash();
  EXPECT_EQ(prefill.size(), 64u);
  EXPECT_NE(prefill, decode);
  EXPECT_EQ(prefill, attention_path_source_hash()) << "stable";
  EXPECT_NE(prefill, family_source_hash(attention_prefill_mma_family()));
}

}  // namespace
}  // namespace q4jit
