// Export then import of winners and decisions (matmul paths, projection fusion, attention paths
// and splits): identical device and sources import; another device, an architecture, a driver, a
// kernel source change or an unknown family is skipped with a reason. Files of version 1 (winners only) still import; the
// command line exports both tables.
#include "tuner/tuning_exchange.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "common/error.hpp"
#include "tests/support/test_support.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/problem_key.hpp"
#include "tuner/projection_fusion.hpp"

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

TuningKey decision_on(const DeviceFingerprint& device, const std::string& family,
                      const std::string& hash, int m_bucket) {
  TuningKey key = key_on(device, hash, m_bucket);
  key.family = family;
  key.N = 6144;
  return key;
}

DecisionRecord path_decision() {
  return {"mma", "tm16.tn64.tk128.wn2.wk2.st4.sk4",
          24.5,  "gemv",
          80.25, {{"gemv", 80.25}, {"mma", 24.5}, {"dequant_gemm", 190.0}},
          2.5};
}

// Decisions on this H100 (paths at M 1 and 16, a fusion), and ones to skip: another device, a
// stale path hash, an unknown kind.
void save_decisions(TuningDb& db) {
  DeviceFingerprint h200 = kH100;
  h200.name = "NVIDIA H200";
  db.save_decision(decision_on(kH100, kMatmulPathFamily, "path1", 1), path_decision());
  db.save_decision(decision_on(kH100, kMatmulPathFamily, "path1", 16), path_decision());
  db.save_decision(decision_on(kH100, kProjectionFusionFamily, "fusion1", 1),
                   *decide_fusion(20.0, std::vector<double>{10.0, 3.0, 3.0}, "4096+1024+1024"));
  db.save_decision(decision_on(h200, kMatmulPathFamily, "path1", 1), path_decision());
  db.save_decision(decision_on(kH100, kMatmulPathFamily, "old-path", 2), path_decision());
  db.save_decision(decision_on(kH100, "sampling_path", "x", 1), path_decision());
}

const std::map<std::string, std::string> kHashes = {
    {"q4_matmul", "hash1"}, {kMatmulPathFamily, "path1"}, {kProjectionFusionFamily, "fusion1"}};

TEST(TuningExchange, DecisionsImportWithTheSameChecks) {
  test::TempDir dir;
  TuningDb source({dir / "a.sqlite3", {}});
  save_decisions(source);
  const nlohmann::json exported = nlohmann::json::parse(export_winners(source).dump());
  EXPECT_EQ(exported["version"], 2);
  EXPECT_EQ(exported["decisions"].size(), 6u);

  const ImportPlan plan = plan_import(exported, kH100, kHashes, "x.json");
  EXPECT_TRUE(plan.accepted.empty());
  ASSERT_EQ(plan.decisions.size(), 3u);
  ASSERT_EQ(plan.skipped.size(), 3u);
  std::string skipped;
  for (const std::string& line : plan.skipped) skipped += line + "\n";
  EXPECT_NE(skipped.find("decision matmul_path K4096 N6144 g128 m1 f16 from NVIDIA H200: another "
                         "device"),
            std::string::npos)
      << skipped;
  EXPECT_NE(skipped.find("m2 f16 from NVIDIA H100 80GB HBM3: kernel source changed"),
            std::string::npos)
      << skipped;
  EXPECT_NE(skipped.find("unknown family 'sampling_path'"), std::string::npos) << skipped;

  TuningDb target({dir / "b.sqlite3", {}});
  for (const DecisionRow& row : plan.decisions) target.save_decision(row.key, row.decision);
  const auto path = target.find_decision(decision_on(kH100, kMatmulPathFamily, "path1", 16));
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(path->choice, "mma");
  EXPECT_EQ(path->config, "tm16.tn64.tk128.wn2.wk2.st4.sk4");
  EXPECT_DOUBLE_EQ(path->default_us, 80.25);
  EXPECT_DOUBLE_EQ(path->tuning_seconds, 2.5);
  ASSERT_EQ(path->alternatives.size(), 3u);
  EXPECT_EQ(path->alternatives[2].first, "dequant_gemm") << "measured order kept";
  EXPECT_DOUBLE_EQ(path->alternatives[2].second, 190.0);
  const auto fusion =
      target.find_decision(decision_on(kH100, kProjectionFusionFamily, "fusion1", 1));
  ASSERT_TRUE(fusion.has_value());
  EXPECT_EQ(fusion->choice, "separate");
  EXPECT_EQ(fusion->config, "4096+1024+1024");

  std::map<std::string, std::string> new_sources = kHashes;
  new_sources[kProjectionFusionFamily] = "fusion2";
  EXPECT_EQ(plan_import(exported, kH100, new_sources, "x.json").decisions.size(), 2u);
}

// A file written before decisions were exported: version 1, no "decisions".
TEST(TuningExchange, VersionOneFilesStillImport) {
  const auto old = nlohmann::json::parse(R"({"format": "q4jit-tuning-winners", "version": 1,
    "results": [{"device": {"name": "NVIDIA H100 80GB HBM3", "arch": 90, "sm_count": 132,
      "driver_version": 13000, "nvrtc_version": "13-0"}, "family": "q4_matmul",
      "source_hash": "hash1", "K": 4096, "N": 4096, "group_size": 128, "act_order": false,
      "m_bucket": 1, "dtype": "f16", "config": "bt128.cpt4.lw128.ks512.mb1.xs.f32.at",
      "default_config": "bt256.cpt4.lw128.ks256.mb1.xs.f32.at", "median_us": 7.5,
      "min_us": 7.25, "p90_us": 7.75, "default_us": 8.0, "repetitions": 8,
      "candidates_tried": 40, "candidates_failed": 2, "tuning_seconds": 1.5,
      "kernel_key": "abc"}]})");
  const ImportPlan plan = plan_import(old, kH100, kHashes, "old.json");
  ASSERT_EQ(plan.accepted.size(), 1u);
  EXPECT_TRUE(plan.decisions.empty());
  EXPECT_TRUE(plan.skipped.empty());
  EXPECT_EQ(plan.accepted[0].winner.config, "bt128.cpt4.lw128.ks512.mb1.xs.f32.at");
  EXPECT_EQ(plan.accepted[0].winner.candidates_tried, 40);
}

TEST(TuningExchange, SourceHashesOfEveryFamilyAndDecision) {
  const std::map<std::string, std::string> hashes = tuning_source_hashes();
  EXPECT_EQ(hashes.at("q4_matmul"), family_source_hash(q4_matmul_family()));
  EXPECT_EQ(hashes.at("q4_mma"), family_source_hash(q4_mma_family()));
  EXPECT_EQ(hashes.at(kDequantGemmFamily), dequant_gemm_source_hash());
  EXPECT_EQ(hashes.at(kMatmulPathFamily), matmul_path_source_hash());
  EXPECT_EQ(hashes.at(kProjectionFusionFamily), projection_fusion_source_hash());
  EXPECT_EQ(hashes.at(kAttentionPathFamily), attention_path_source_hash());
  EXPECT_EQ(hashes.at(kAttentionSplitFamily), attention_split_source_hash());
}

// Attention decisions (prefill path, decode split) travel in the decisions list of version 2:
// this build's hashes import them, a changed attention kernel skips them, and a build that does
// not know the kinds yet would skip them as unknown families.
TEST(TuningExchange, AttentionDecisionsImport) {
  test::TempDir dir;
  TuningDb source({dir / "a.sqlite3", {}});
  const AttentionGeometry geometry{32, 8, 128, 4096};
  const TuningKey prefill =
      attention_key(kH100, kAttentionPathFamily, attention_path_source_hash(), geometry, 16);
  const TuningKey decode =
      attention_key(kH100, kAttentionSplitFamily, attention_split_source_hash(), geometry, 4096);
  source.save_decision(prefill, *decide_attention({{"mma", "d128.bq64.bk64.st2", 21.5},
                                                   {"simt", "d128.bq16.bk64.w2", 14.25}},
                                                  "mma", "d128.bq64.bk64.st2"));
  source.save_decision(decode, *decide_attention({{"sp128", "d128.sp128.t256.hb2", 31.25},
                                                  {"sp256", "d128.sp256.t256.hb2", 34.5}},
                                                 "sp256", "d128.sp256.t256.hb2"));
  const nlohmann::json exported = nlohmann::json::parse(export_winners(source).dump());
  EXPECT_EQ(exported["version"], 2) << "the format is unchanged";

  const ImportPlan plan = plan_import(exported, kH100, tuning_source_hashes(), "x.json");
  ASSERT_EQ(plan.decisions.size(), 2u);
  EXPECT_TRUE(plan.skipped.empty());
  TuningDb target({dir / "b.sqlite3", {}});
  for (const DecisionRow& row : plan.decisions) target.save_decision(row.key, row.decision);
  const auto split = target.find_decision(decode);
  ASSERT_TRUE(split.has_value());
  EXPECT_EQ(split->choice, "sp128");
  EXPECT_EQ(split->config, "d128.sp128.t256.hb2");
  EXPECT_DOUBLE_EQ(split->default_us, 34.5);
  const auto path = target.find_decision(prefill);
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(path->choice, "simt");
  EXPECT_EQ(path->alternatives.size(), 2u);

  std::map<std::string, std::string> changed = tuning_source_hashes();
  changed[kAttentionSplitFamily] = "another decode kernel";
  const ImportPlan stale = plan_import(exported, kH100, changed, "x.json");
  EXPECT_EQ(stale.decisions.size(), 1u);
  ASSERT_EQ(stale.skipped.size(), 1u);
  EXPECT_NE(stale.skipped[0].find("decision attention_split K128 N32 g8 m4096 f16"),
            std::string::npos)
      << stale.skipped[0];
  EXPECT_NE(stale.skipped[0].find("kernel source changed"), std::string::npos);
  std::map<std::string, std::string> older = tuning_source_hashes();
  older.erase(kAttentionPathFamily);
  older.erase(kAttentionSplitFamily);
  EXPECT_EQ(plan_import(exported, kH100, older, "x.json").skipped.size(), 2u);
}

// q4jit tuning export writes both tables; import without a GPU says it needs one, and a file of
// an unknown version is refused first, GPU or not.
TEST(TuningExchange, CommandLineExportsWinnersAndDecisions) {
  test::TempDir dir;
  {
    TuningDb db({dir / "tuning.sqlite3", {}});
    WinnerRecord winner;
    winner.config = "bt128.cpt4.lw128.ks512.mb1.xs.f32.at";
    winner.median_us = 7.5;
    db.save_winner(key_on(kH100, "hash1", 1), winner);
    save_decisions(db);
  }
  const std::string db_option = "tuning --tuning-db '" + (dir / "tuning.sqlite3").string() + "' ";
  const test::CommandResult exported =
      test::run_q4jit(db_option + "export '" + (dir / "out.json").string() + "'");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_NE(exported.out.find("exported 1 winners and 6 decisions"), std::string::npos)
      << exported.out;
  std::ifstream file(dir / "out.json");
  const nlohmann::json written = nlohmann::json::parse(file);
  EXPECT_EQ(written["results"].size(), 1u);
  EXPECT_EQ(written["decisions"].size(), 6u);
  EXPECT_EQ(plan_import(written, kH100, kHashes, "out.json").decisions.size(), 3u);

  const test::CommandResult imported =
      test::run_q4jit(db_option + "import '" + (dir / "out.json").string() + "'");
  if (imported.exit_code == 0) {
    EXPECT_NE(imported.out.find("imported "), std::string::npos) << imported.out;
  } else {
    EXPECT_NE(imported.err.find("tuning import"), std::string::npos) << imported.err;
  }

  std::ofstream(dir / "newer.json")
      << R"({"format": "q4jit-tuning-winners", "version": 3, "results": []})";
  const test::CommandResult newer =
      test::run_q4jit(db_option + "import '" + (dir / "newer.json").string() + "'");
  EXPECT_EQ(newer.exit_code, 1);
  EXPECT_NE(newer.err.find("newer.json: export version 3 is not supported"), std::string::npos)
      << "the file is checked before the GPU: " << newer.err;
}

TEST(TuningExchange, RejectsOtherFiles) {
  EXPECT_THROW(plan_import(nlohmann::json::parse("{\"a\": 1}"), kH100, {}, "x.json"), Error);
  EXPECT_THROW(plan_import(nlohmann::json::parse("[1, 2]"), kH100, {}, "x.json"), Error);
  const auto broken = nlohmann::json::parse(
      "{\"format\": \"q4jit-tuning-winners\", \"version\": 1, \"results\": [{\"K\": 1}]}");
  EXPECT_THROW(plan_import(broken, kH100, {}, "x.json"), Error);
  const auto newer = nlohmann::json::parse(
      R"({"format": "q4jit-tuning-winners", "version": 3, "results": [], "decisions": []})");
  EXPECT_THROW(plan_import(newer, kH100, {}, "x.json"), Error);
  const auto no_decisions =
      nlohmann::json::parse(R"({"format": "q4jit-tuning-winners", "version": 2, "results": []})");
  EXPECT_THROW(plan_import(no_decisions, kH100, {}, "x.json"), Error);
  const auto odd_version = nlohmann::json::parse(
      R"({"format": "q4jit-tuning-winners", "version": "2", "results": [], "decisions": []})");
  EXPECT_THROW(plan_import(odd_version, kH100, {}, "x.json"), Error);
  const auto bad_decision = nlohmann::json::parse(
      R"({"format": "q4jit-tuning-winners", "version": 2, "results": [],
          "decisions": [{"family": "matmul_path"}]})");
  try {
    plan_import(bad_decision, kH100, {}, "x.json");
    ADD_FAILURE() << "a decision without its fields was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("x.json: decisions[0]"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace q4jit
