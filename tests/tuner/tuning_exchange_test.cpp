// Export then import of winners: identical device and sources import; another device, an
// architecture, a driver or a kernel source change is skipped with a reason.
#include "tuner/tuning_exchange.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

const DeviceFingerprint kH100{"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};

TuningKey key_on(const DeviceFingerprint& device, const std::string& hash, int m_bucket) {
  TuningKey key;
  key.device = device;
  key.family = "q4_matmul";
  key.source_hash = hash;
  key.K = 4096;
  key.N = 4096;
  key.group_size = 128;
  key.m_bucket = m_bucket;
  return key;
}

TEST(TuningExchange, ImportChecksDeviceArchitectureAndSources) {
  test::TempDir dir;
  TuningDb source({dir / "a.sqlite3", {}});
  DeviceFingerprint h200 = kH100;
  h200.name = "NVIDIA H200";
  DeviceFingerprint new_driver = kH100;
  new_driver.driver_version = 13010;
  WinnerRecord winner;
  winner.config = "bt128.cpt4.lw128.ks512.mb1.xs.f32.at";
  winner.median_us = 7.5;
  source.save_winner(key_on(kH100, "hash1", 1), winner);
  source.save_winner(key_on(kH100, "hash1", 2), winner);
  source.save_winner(key_on(kH100, "old-hash", 4), winner);
  source.save_winner(key_on(h200, "hash1", 1), winner);
  source.save_winner(key_on(new_driver, "hash1", 1), winner);
  const nlohmann::json exported = nlohmann::json::parse(export_winners(source).dump());

  const ImportPlan plan = plan_import(exported, kH100, {{"q4_matmul", "hash1"}}, "x.json");
  ASSERT_EQ(plan.accepted.size(), 2u);
  ASSERT_EQ(plan.skipped.size(), 3u);
  std::string skipped;
  for (const std::string& line : plan.skipped) skipped += line + "\n";
  EXPECT_NE(skipped.find("another device"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("kernel source changed"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("driver 13010"), std::string::npos) << skipped;

  TuningDb target({dir / "b.sqlite3", {}});
  for (const ResultRow& row : plan.accepted) target.save_winner(row.key, row.winner);
  const auto imported = target.find_winner(key_on(kH100, "hash1", 2));
  ASSERT_TRUE(imported.has_value());
  EXPECT_EQ(imported->config, winner.config);
  EXPECT_DOUBLE_EQ(imported->median_us, 7.5);

  DeviceFingerprint other_arch = kH100;
  other_arch.sm_count = 114;
  EXPECT_EQ(plan_import(exported, other_arch, {{"q4_matmul", "hash1"}}, "x.json").accepted.size(),
            0u);
}

TEST(TuningExchange, RejectsOtherFiles) {
  EXPECT_THROW(plan_import(nlohmann::json::parse("{\"a\": 1}"), kH100, {}, "x.json"), Error);
  EXPECT_THROW(plan_import(nlohmann::json::parse("[1, 2]"), kH100, {}, "x.json"), Error);
  const auto broken = nlohmann::json::parse(
      "{\"format\": \"q4jit-tuning-winners\", \"version\": 1, \"results\": [{\"K\": 1}]}");
  EXPECT_THROW(plan_import(broken, kH100, {}, "x.json"), Error);
}

}  // namespace
}  // namespace q4jit
