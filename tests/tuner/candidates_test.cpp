// Enumeration and pruning: the generic rules on hand-made footprints, post-compile pruning, M
// buckets, and the q4_matmul space pruned per shape agreeing with the family's legal().
#include "tuner/candidates.hpp"

#include <set>

#include <gtest/gtest.h>

#include "tuner/problem_key.hpp"
#include "tuner/q4_matmul_tuning.hpp"

namespace q4jit {
namespace {

DeviceInfo h100_like() {
  DeviceInfo device;
  device.name = "NVIDIA H100 80GB HBM3";
  device.cc_major = 9;
  device.sm_count = 132;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 << 10;
  device.smem_per_block_optin = 227 << 10;
  device.smem_per_sm = 228 << 10;
  device.l2_bytes = 50 << 20;
  return device;
}

TEST(Candidates, PruneBeforeCompileNamesTheFirstFailingRule) {
  DeviceInfo device = h100_like();
  device.max_threads_per_block = 256;
  device.smem_per_block_optin = 64 << 10;
  const std::vector<CandidateFootprint> space = {
      {"fits", 256, 1000, 2, ""},
      {"threads", 512, 1000, 1, ""},
      {"smem", 128, (64 << 10) + 1, 1, ""},
      {"both", 1024, 1 << 20, 1, ""},  // threads checked first
      {"indivisible", 128, 1000, 1, "K must be a multiple of 64"},
      {"tile", 128, 1000, 4, ""},
  };
  const std::vector<CandidateVerdict> verdicts = prune_before_compile(space, device, 2);
  ASSERT_EQ(verdicts.size(), space.size());
  EXPECT_EQ(verdicts[0].status, TrialStatus::ok);
  EXPECT_EQ(verdicts[1].status, TrialStatus::pruned_threads);
  EXPECT_EQ(verdicts[2].status, TrialStatus::pruned_smem);
  EXPECT_NE(verdicts[2].detail.find("65537"), std::string::npos) << verdicts[2].detail;
  EXPECT_EQ(verdicts[3].status, TrialStatus::pruned_threads);
  EXPECT_EQ(verdicts[4].status, TrialStatus::pruned_divisibility);
  EXPECT_EQ(verdicts[4].detail, "K must be a multiple of 64");
  EXPECT_EQ(verdicts[5].status, TrialStatus::pruned_m_tile);
  EXPECT_EQ(prune_before_compile(space, device, 4)[5].status, TrialStatus::ok);
}

TEST(Candidates, PruneAfterCompileOnSpillsAndOccupancy) {
  FunctionAttributes attributes;
  attributes.registers = 96;
  attributes.local_bytes = 0;
  EXPECT_FALSE(prune_after_compile("a", attributes, 2).has_value());
  attributes.local_bytes = 129;
  const auto spills = prune_after_compile("a", attributes, 2);
  ASSERT_TRUE(spills.has_value());
  EXPECT_EQ(spills->status, TrialStatus::pruned_spills);
  EXPECT_FALSE(prune_after_compile("a", attributes, 2, {256}).has_value());
  attributes.local_bytes = 0;
  const auto occupancy = prune_after_compile("a", attributes, 0);
  ASSERT_TRUE(occupancy.has_value());
  EXPECT_EQ(occupancy->status, TrialStatus::pruned_occupancy);
}

TEST(Candidates, MBuckets) {
  EXPECT_EQ(m_bucket(1), 1);
  EXPECT_EQ(m_bucket(2), 2);
  EXPECT_EQ(m_bucket(3), 4);
  EXPECT_EQ(m_bucket(16), 16);
  EXPECT_EQ(m_bucket(17), 32);
  EXPECT_EQ(m_bucket(100), 128);
  EXPECT_EQ(parse_m_buckets("16,1,3,4,2"), (std::vector<int>{1, 2, 4, 16}));
  EXPECT_THROW(parse_m_buckets("1,x"), Error);
  EXPECT_THROW(parse_m_buckets("0"), Error);
  EXPECT_THROW(parse_m_buckets(""), Error);
}

struct SpaceCase {
  Q4MatmulShape shape;
  const char* name;
};

// The shapes of Llama-7B and of the fixture model, act-order on and off, plus a bad group size.
const SpaceCase kCases[] = {
    {{1, 4096, 12288, 128, false}, "qkv_7b"},     {{1, 4096, 4096, 128, true}, "o_7b_act"},
    {{1, 11008, 4096, 128, false}, "down_7b"},    {{1, 512, 512, 128, true}, "q_fixture_act"},
    {{1, 1408, 512, 128, false}, "down_fixture"}, {{1, 512, 1408, 512, false}, "no_group"},
    {{1, 4096, 4096, 96, false}, "bad_group"},
};

TEST(Candidates, Q4MatmulPruningAgreesWithLegalAtEveryBucket) {
  const DeviceInfo device = h100_like();
  for (const SpaceCase& c : kCases) {
    for (int bucket : {1, 2, 4, 8, 16, 32}) {
      Q4MatmulShape shape = c.shape;
      shape.M = bucket;
      const std::vector<Q4MatmulConfig> candidates = q4_matmul_candidates(shape);
      ASSERT_FALSE(candidates.empty());
      EXPECT_EQ(to_string(candidates.front()), to_string(Q4MatmulConfig{}));  // default first
      std::vector<CandidateFootprint> footprints;
      for (const Q4MatmulConfig& cfg : candidates)
        footprints.push_back(q4_matmul_footprint(cfg, shape));
      const std::vector<CandidateVerdict> verdicts =
          prune_before_compile(footprints, device, bucket);
      std::set<std::string> survivors, legal_ones;
      for (const CandidateVerdict& verdict : verdicts) {
        if (verdict.status == TrialStatus::ok) survivors.insert(verdict.config);
      }
      for (const Q4MatmulConfig& cfg : space(device, shape)) legal_ones.insert(to_string(cfg));
      EXPECT_EQ(survivors, legal_ones) << c.name << " bucket " << bucket;
      if (std::string(c.name) == "bad_group") {
        EXPECT_TRUE(survivors.empty());
      }
      if (bucket == 1 && std::string(c.name) != "bad_group") {
        for (const std::string& config : survivors)
          EXPECT_NE(config.find(".mb1."), std::string::npos);
      }
    }
  }
}

TEST(Candidates, Q4MatmulSpaceEnumeration) {
  const Q4MatmulShape plain{1, 4096, 4096, 128, false}, act{1, 4096, 4096, 128, true};
  const auto plain_candidates = q4_matmul_candidates(plain);
  const auto act_candidates = q4_matmul_candidates(act);
  EXPECT_GT(act_candidates.size(), plain_candidates.size());  // xp only with act-order
  for (const Q4MatmulConfig& cfg : plain_candidates) EXPECT_NE(cfg.x_staging, XStaging::pregather);
  std::set<std::string> names;
  for (const Q4MatmulConfig& cfg : act_candidates) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << "duplicate " << to_string(cfg);
    EXPECT_EQ(q4_matmul_configs_by_name().count(to_string(cfg)), 1u);
    EXPECT_LE(q4_matmul_smem_bytes(cfg), 48 << 10) << to_string(cfg);  // all static smem
  }
  // A device with little shared memory prunes the widest staged slices by smem.
  DeviceInfo small = h100_like();
  small.smem_per_block = small.smem_per_block_optin = 8 << 10;
  Q4MatmulShape wide = act;
  wide.M = 8;
  std::vector<CandidateFootprint> footprints;
  for (const Q4MatmulConfig& cfg : q4_matmul_candidates(wide))
    footprints.push_back(q4_matmul_footprint(cfg, wide));
  int smem_pruned = 0;
  for (const CandidateVerdict& verdict : prune_before_compile(footprints, small, 8)) {
    smem_pruned += verdict.status == TrialStatus::pruned_smem;
  }
  EXPECT_GT(smem_pruned, 0);
}

}  // namespace
}  // namespace q4jit
