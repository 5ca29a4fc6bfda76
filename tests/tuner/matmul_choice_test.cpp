// MatmulChooser (tuner/matmul_choice.hpp) reading a real SQLite tuning database: stored path
// decisions per M bucket (gemv, mma, dequant_gemm with their configurations), family winners
// without a decision, and everything that must fall back to the defaults (no rows, another
// device, a stale source hash, an unknown or illegal stored configuration, a newer schema).
#include "tuner/matmul_choice.hpp"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"
#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/q4_mma_tuning.hpp"

namespace q4jit {
namespace {

DeviceInfo h100() {
  DeviceInfo device;
  device.name = "NVIDIA H100 80GB HBM3";
  device.cc_major = 9;
  device.sm_count = 132;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = 227 * 1024;
  device.l2_bytes = 50 << 20;
  device.driver_version = 13000;
  return device;
}

const DeviceFingerprint kFingerprint{"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
const MatmulShapeKey kShape{4096, 12288, 128, true};

TuningKey decision_key(int64_t bucket, const DeviceFingerprint& device = kFingerprint,
                       const std::string& hash = matmul_path_source_hash()) {
  return make_tuning_key(device, kMatmulPathFamily, hash, kShape, bucket);
}

DecisionRecord decision(MatmulPath path, const std::string& config) {
  DecisionRecord record;
  record.choice = to_string(path);
  record.config = config;
  record.median_us = 10;
  record.default_choice = "mma";
  record.default_us = 12;
  record.alternatives = {{to_string(path), 10.0}, {"mma", 12.0}};
  return record;
}

// A legal configuration of each family at `bucket` other than the default.
std::string gemv_config(int64_t bucket, size_t index) {
  return to_string(
      space(h100(), Q4MatmulShape{bucket, kShape.K, kShape.N, kShape.group_size, kShape.act_order})
          .at(index));
}
std::string mma_config(int64_t bucket, size_t index) {
  return to_string(
      space(h100(), Q4MmaShape{bucket, kShape.K, kShape.N, kShape.group_size, kShape.act_order})
          .at(index));
}

class MatmulChooserDb : public ::testing::Test {
 protected:
  test::TempDir dir_;
  std::filesystem::path path_ = dir_ / "tuning.sqlite3";
};

TEST_F(MatmulChooserDb, EmptyDatabaseGivesTheDefaults) {
  TuningDb db({path_, {}});
  const MatmulChooser chooser(&db, kFingerprint, h100());
  const MatmulChoice one = chooser.choose(kShape, 1);
  EXPECT_EQ(one.path, MatmulPath::gemv);
  EXPECT_FALSE(one.tuned);
  EXPECT_EQ(to_string(one.gemv), gemv_config(1, 0));
  const MatmulChoice many = chooser.choose(kShape, 512);
  EXPECT_EQ(many.path, MatmulPath::mma);
  EXPECT_EQ(to_string(many.mma),
            to_string(q4_mma_default(
                h100(), {512, kShape.K, kShape.N, kShape.group_size, kShape.act_order})));
  EXPECT_NE(many.describe().find("(default)"), std::string::npos);
}

TEST_F(MatmulChooserDb, StoredDecisionsPickPathAndConfigurationPerBucket) {
  const std::string gemv = gemv_config(16, 5);
  const std::string mma = mma_config(64, 7);
  const DequantGemmConfig dequant = dequant_gemm_candidates(h100(), kShape, 512, true).at(3);
  {
    TuningDb db({path_, {}});
    db.save_decision(decision_key(16), decision(MatmulPath::gemv, gemv));
    db.save_decision(decision_key(64), decision(MatmulPath::mma, mma));
    db.save_decision(decision_key(512), decision(MatmulPath::dequant_gemm, to_string(dequant)));
    WinnerRecord winner;
    winner.config = mma;
    winner.median_us = 10;
    winner.kernel_key = "feedc0de";
    db.save_winner(make_tuning_key(kFingerprint, q4_mma_family(),
                                   family_source_hash(q4_mma_family()), kShape, 64),
                   winner);
  }
  TuningDb db({path_, {}});  // reopened: read from the file
  const MatmulChooser chooser(&db, kFingerprint, h100());
  for (int64_t M : {9, 12, 16}) {
    const MatmulChoice choice = chooser.choose(kShape, M);
    EXPECT_EQ(choice.path, MatmulPath::gemv) << "M " << M << ": bucket 16 decided gemv";
    EXPECT_EQ(to_string(choice.gemv), gemv);
    EXPECT_TRUE(choice.tuned);
  }
  const MatmulChoice at64 = chooser.choose(kShape, 40);
  EXPECT_EQ(at64.path, MatmulPath::mma);
  EXPECT_EQ(to_string(at64.mma), mma);
  EXPECT_EQ(at64.kernel_key, "feedc0de") << "the family winner's compiled kernel";
  const MatmulChoice at512 = chooser.choose(kShape, 300);
  EXPECT_EQ(at512.path, MatmulPath::dequant_gemm);
  EXPECT_EQ(to_string(at512.dequantize), to_string(dequant.dequantize));
  EXPECT_EQ(to_string(at512.gemm), to_string(dequant.gemm));
  EXPECT_NE(at512.describe().find("dequant_gemm " + to_string(dequant) + " (tuned)"),
            std::string::npos)
      << at512.describe();
  const MatmulChoice at2048 = chooser.choose(kShape, 2048);
  EXPECT_EQ(at2048.path, MatmulPath::mma) << "no row: the default";
  EXPECT_FALSE(at2048.tuned);
}

TEST_F(MatmulChooserDb, WinnersWithoutADecisionTuneTheDefaultPath) {
  const std::string gemv = gemv_config(1, 3);
  const std::string mma = mma_config(128, 9);
  TuningDb db({path_, {}});
  WinnerRecord winner;
  winner.median_us = 5;
  winner.config = gemv;
  db.save_winner(make_tuning_key(kFingerprint, q4_matmul_family(),
                                 family_source_hash(q4_matmul_family()), kShape, 1),
                 winner);
  winner.config = mma;
  db.save_winner(make_tuning_key(kFingerprint, q4_mma_family(), family_source_hash(q4_mma_family()),
                                 kShape, 128),
                 winner);
  const MatmulChooser chooser(&db, kFingerprint, h100());
  const MatmulChoice one = chooser.choose(kShape, 1);
  EXPECT_EQ(one.path, MatmulPath::gemv);
  EXPECT_EQ(to_string(one.gemv), gemv);
  EXPECT_TRUE(one.tuned);
  const MatmulChoice prefill = chooser.choose(kShape, 100);
  EXPECT_EQ(prefill.path, MatmulPath::mma);
  EXPECT_EQ(to_string(prefill.mma), mma);
  EXPECT_TRUE(prefill.tuned);
}

// A fused decode launch needs a stream-K GEMV: the chosen one when it is, else the fastest
// stream-K trial that validated (never a wrong or untimed one), else the space's first.
TEST_F(MatmulChooserDb, FusedGemvIsTheFastestValidStreamConfiguration) {
  const MatmulShapeKey shape{4096, 12288, 128, false};
  const Q4MatmulShape one_row{1, shape.K, shape.N, shape.group_size, false};
  std::vector<Q4MatmulConfig> stream, block;
  for (const Q4MatmulConfig& cfg : space(h100(), one_row))
    (fusable(cfg) ? stream : block).push_back(cfg);
  ASSERT_GE(stream.size(), 3u);
  ASSERT_FALSE(block.empty());
  {
    const MatmulChooser no_db(nullptr, kFingerprint, h100());
    const std::optional<Q4MatmulConfig> fallback = no_db.fused_gemv(shape);
    ASSERT_TRUE(fallback.has_value());
    EXPECT_EQ(to_string(*fallback), to_string(stream.front())) << "without a database";
  }
  TuningDb db({path_, {}});
  const TuningKey key = make_tuning_key(kFingerprint, q4_matmul_family(),
                                        family_source_hash(q4_matmul_family()), shape, 1);
  WinnerRecord winner;
  winner.median_us = 5;
  winner.config = to_string(block.front());
  db.save_winner(key, winner);
  const auto trial = [&](const std::string& config, TrialStatus status, double us) {
    TrialRecord record;
    record.config = config;
    record.status = status;
    record.median_us = us;
    db.save_trial(key, record);
  };
  trial(to_string(block.front()), TrialStatus::ok, 5);
  trial(to_string(stream[0]), TrialStatus::ok, 9);
  trial(to_string(stream[1]), TrialStatus::ok, 7);
  trial(to_string(stream[2]), TrialStatus::wrong_result, 6);
  trial("bt999.not.a.config", TrialStatus::ok, 1);
  const MatmulChooser chooser(&db, kFingerprint, h100());
  EXPECT_EQ(to_string(chooser.choose(shape, 1).gemv), to_string(block.front()));
  const std::optional<Q4MatmulConfig> fused = chooser.fused_gemv(shape);
  ASSERT_TRUE(fused.has_value());
  EXPECT_EQ(to_string(*fused), to_string(stream[1]));

  winner.config = to_string(stream[0]);
  db.save_winner(key, winner);
  const MatmulChooser stream_winner(&db, kFingerprint, h100());
  EXPECT_EQ(to_string(*stream_winner.fused_gemv(shape)), to_string(stream[0]))
      << "a stream-K winner is its own fused form";
}

TEST_F(MatmulChooserDb, ForeignStaleUnknownOrIllegalRowsFallBackToTheDefaults) {
  TuningDb db({path_, {}});
  DeviceFingerprint new_driver = kFingerprint;
  new_driver.driver_version = 13010;
  db.save_decision(decision_key(1, new_driver), decision(MatmulPath::gemv, gemv_config(1, 2)));
  db.save_decision(decision_key(2, kFingerprint, "an-older-source"),
                   decision(MatmulPath::gemv, gemv_config(2, 2)));
  db.save_decision(decision_key(4), decision(MatmulPath::gemv, "bt999.nonsense"));
  db.save_decision(decision_key(8), decision(MatmulPath::gemv, gemv_config(8, 1)));
  DecisionRecord fused = decision(MatmulPath::gemv, gemv_config(32, 0));
  fused.choice = "fused_mlp";
  db.save_decision(decision_key(32), fused);
  // mb8 at 2 rows is illegal (a pass mostly of padding rows): stored for bucket 2 by hand.
  std::string illegal;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (cfg.rows_per_block == 8) illegal = to_string(cfg);
  }
  ASSERT_FALSE(illegal.empty());
  db.save_decision(decision_key(2), decision(MatmulPath::gemv, illegal));
  const MatmulChooser chooser(&db, kFingerprint, h100());
  for (int64_t M : {1, 2, 4, 32}) {
    const MatmulChoice choice = chooser.choose(kShape, M);
    EXPECT_FALSE(choice.tuned) << "M " << M << ": " << choice.describe();
    EXPECT_EQ(choice.path, default_path(M, true)) << "M " << M;
  }
  EXPECT_TRUE(chooser.choose(kShape, 8).tuned) << "the one good row";
}

TEST_F(MatmulChooserDb, NewerSchemaIsIgnored) {
  {
    TuningDb db({path_, {}});
    db.save_decision(decision_key(1), decision(MatmulPath::gemv, gemv_config(1, 2)));
  }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  TuningDb db({path_, [](const std::string&) {}});
  ASSERT_TRUE(db.read_only());
  const MatmulChooser chooser(&db, kFingerprint, h100());
  EXPECT_FALSE(chooser.choose(kShape, 1).tuned);
  const MatmulChooser without(nullptr, kFingerprint, h100());
  EXPECT_FALSE(without.choose(kShape, 1).tuned);
}

}  // namespace
}  // namespace q4jit
