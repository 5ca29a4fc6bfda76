// Reports of a fixed recorded database in each format against checked-in files
// (tests/fixtures/report.{json,csv,md,html}); Q4JIT_UPDATE_FIXTURES=1 rewrites them (review the
// diff). Also: the HTML is self-contained, the model filter and bandwidth arithmetic, and the
// projection fusion and attention decisions in every format.
#include "tuner/report.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_support.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/projection_fusion.hpp"

namespace q4jit {
namespace {

TrialRecord trial(const std::string& config, TrialStatus status, double median_us, int rung,
                  const std::string& detail = "") {
  TrialRecord record;
  record.config = config;
  record.status = status;
  record.median_us = median_us;
  record.min_us = median_us * 0.98;
  record.p90_us = median_us * 1.03;
  record.repetitions = rung > 0 ? 1 << rung : 0;
  record.rung = rung;
  record.detail = detail;
  return record;
}

// The recorded database: an H100 with its ceiling, two q4_matmul problems of one shape, one where
// a candidate won and one where the 2% rule kept the default, a q4_mma winner at M 16, the
// path decisions at M 1 (gemv) and 16 (mma, gemv and dequant_gemm measured), and the shape as a
// qkv of three 4096-wide parts: fused at M 1, separate at M 16; and the attention of a
// 32-head, 8-KV-head, D 128 model: SIMT prefill at T 16, mma kept by the 2% rule at T 512, and
// the decode split 128 beating the rule's 256 at 4096 positions.
void write_recorded_db(TuningDb& db) {
  TuningKey key;
  key.device = {"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
  key.family = "q4_matmul";
  key.source_hash = "5f1c0ffee";
  key.K = 4096;
  key.N = 12288;
  key.group_size = 128;
  key.act_order = true;
  db.save_read_ceiling(key.device, 3.08e12);
  const std::string fallback = "bt256.cpt4.lw128.ks256.mb1.xs.f32.at";
  const std::string best = "bt128.cpt4.lw128.ks512.mb1.xs.f32.at";
  for (const TrialRecord& record :
       {trial(fallback, TrialStatus::ok, 20.0, 4), trial(best, TrialStatus::ok, 15.5, 4),
        trial("bt64.cpt2.lw32.ks1024.mb1.xs.f32.at", TrialStatus::ok, 16.0, 4),
        trial("bt64.cpt4.lw64.ks256.mb1.xs.f32.at", TrialStatus::ok, 31.25, 1),
        trial("bt64.cpt2.lw32.ks1024.mb1.xg.h2.at", TrialStatus::wrong_result, 0, 0,
              "relative error 5.10e-02 above 4.0e-03"),
        trial("bt256.cpt4.lw128.ks256.mb2.xs.f32.at", TrialStatus::pruned_m_tile, 0, 0,
              "M tile 2 > bucket 1")}) {
    db.save_trial(key, record);
  }
  db.save_winner(key, {best, fallback, 15.5, 15.2, 15.9, 20.0, 6, 6, 1, 1.25, "abc123"});
  key.m_bucket = 2;
  for (const TrialRecord& record :
       {trial(fallback, TrialStatus::ok, 30.0, 3), trial(best, TrialStatus::ok, 29.7, 3),
        trial("bt32.cpt8.lw128.ks512.mb2.xp.f32.tp", TrialStatus::compile_failed, 0, 0,
              "nvrtc: error <sm_90>")}) {
    db.save_trial(key, record);
  }
  db.save_winner(key, {fallback, fallback, 30.0, 29.5, 30.5, 30.0, 6, 3, 1, 0.5, "def456"});

  TuningKey mma = key;
  mma.family = "q4_mma";
  mma.source_hash = "77aa";
  mma.m_bucket = 16;
  const std::string mma_default = "tm16.tn128.tk64.wn4.wk1.st3.sk2";
  const std::string mma_best = "tm16.tn64.tk128.wn2.wk2.st4.sk4";
  db.save_trial(mma, trial(mma_default, TrialStatus::ok, 27.0, 2));
  db.save_trial(mma, trial(mma_best, TrialStatus::ok, 24.5, 2));
  db.save_winner(mma, {mma_best, mma_default, 24.5, 24.1, 25.0, 27.0, 6, 2, 0, 0.75, "aa01"});

  TuningKey path = key;
  path.family = "matmul_path";
  path.source_hash = "0c0c";
  path.m_bucket = 1;
  db.save_decision(path, {"gemv", best, 15.5, "gemv", 15.5, {{"gemv", 15.5}}, 1.25});
  path.m_bucket = 16;
  db.save_decision(path, {"mma",
                          mma_best,
                          24.5,
                          "mma",
                          24.5,
                          {{"gemv", 80.25}, {"mma", 24.5}, {"dequant_gemm", 190.0}},
                          2.5});

  TuningKey fusion = key;
  fusion.family = kProjectionFusionFamily;
  fusion.source_hash = "f00d";
  fusion.m_bucket = 1;
  db.save_decision(fusion,
                   *decide_fusion(15.5, std::vector<double>{5.5, 5.25, 5.5}, "4096+4096+4096"));
  fusion.m_bucket = 16;
  db.save_decision(fusion,
                   *decide_fusion(24.5, std::vector<double>{7.75, 7.75, 7.75}, "4096+4096+4096"));

  const AttentionGeometry geometry{32, 8, 128, 4096};
  db.save_decision(attention_key(key.device, kAttentionPathFamily, "a77e", geometry, 16),
                   *decide_attention({{"mma", "d128.bq64.bk64.st2", 21.5},
                                      {"mma", "d128.bq128.bk64.st2", 24.0},
                                      {"simt", "d128.bq16.bk64.w2", 14.25}},
                                     "mma", "d128.bq64.bk64.st2"));
  db.save_decision(attention_key(key.device, kAttentionPathFamily, "a77e", geometry, 512),
                   *decide_attention({{"mma", "d128.bq64.bk64.st2", 400.0},
                                      {"mma", "d128.bq128.bk64.st2", 395.0},
                                      {"simt", "d128.bq32.bk64.w4", 2750.0}},
                                     "mma", "d128.bq64.bk64.st2"));
  db.save_decision(attention_key(key.device, kAttentionSplitFamily, "5e11", geometry, 4096),
                   *decide_attention({{"sp64", "d128.sp64.t256.hb2", 40.0},
                                      {"sp128", "d128.sp128.t256.hb2", 31.25},
                                      {"sp256", "d128.sp256.t256.hb2", 34.5}},
                                     "sp256", "d128.sp256.t256.hb2"));
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

class ReportFormats : public ::testing::TestWithParam<const char*> {};

TEST_P(ReportFormats, MatchCheckedInFile) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const std::string format = GetParam();
  const std::string rendered = render_report(build_report(db, ""), format);
  const std::filesystem::path expected_file = test::fixture("report." + format);
  const char* update = std::getenv("Q4JIT_UPDATE_FIXTURES");
  if (update && std::string(update) == "1")
    std::ofstream(expected_file, std::ios::binary) << rendered;
  ASSERT_TRUE(std::filesystem::exists(expected_file)) << expected_file;
  EXPECT_EQ(rendered, read_text(expected_file)) << "rerun with Q4JIT_UPDATE_FIXTURES=1 and review";
}

INSTANTIATE_TEST_SUITE_P(Tuner, ReportFormats, ::testing::Values("json", "csv", "md", "html"));

TEST(Report, NumbersAndFilters) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const Report report = build_report(db, "H100");
  ASSERT_EQ(report.rows.size(), 3u);
  ASSERT_EQ(report.decisions.size(), 2u);
  const ReportRow& row = report.rows[0];
  EXPECT_EQ(row.path, "gemv");
  EXPECT_EQ(row.decided_path, "gemv");
  EXPECT_EQ(report.rows[1].decided_path, "") << "no decision at M 2";
  EXPECT_EQ(report.rows[2].key.family, "q4_mma");
  EXPECT_EQ(report.rows[2].path, "mma");
  EXPECT_EQ(report.rows[2].decided_path, "mma");
  EXPECT_EQ(report.decisions[1].decision.alternatives.size(), 3u);
  ASSERT_EQ(report.fusions.size(), 2u);
  EXPECT_EQ(report.fusions[0].decision.choice, "fused");
  EXPECT_EQ(report.fusions[1].decision.choice, "separate") << "24.50 us > 1.02 * 23.25 us";
  EXPECT_DOUBLE_EQ(alternative_us(report.fusions[1].decision, "separate"), 23.25);
  ASSERT_TRUE(row.fusion);
  EXPECT_EQ(row.fusion->choice, "fused");
  EXPECT_FALSE(report.rows[1].fusion) << "no fusion decision at M 2";
  ASSERT_TRUE(report.rows[2].fusion);
  EXPECT_EQ(report.rows[2].fusion->choice, "separate");
  // qweight 4096/8*12288*4 + scales 32*12288*2 + qzeros 32*1536*4 + g_idx 4096*4.
  EXPECT_EQ(row.weight_bytes, 25165824 + 786432 + 196608 + 16384);
  EXPECT_NEAR(row.speedup, 20.0 / 15.5, 1e-9);
  EXPECT_NEAR(row.tbps, row.weight_bytes / 15.5e-6 / 1e12, 1e-9);
  EXPECT_NEAR(row.ceiling_fraction, row.tbps / 3.08, 1e-9);
  EXPECT_EQ(row.trials.front().config, "bt128.cpt4.lw128.ks512.mb1.xs.f32.at");  // fastest first
  EXPECT_TRUE(build_report(db, "A100").rows.empty());
  EXPECT_TRUE(build_report(db, "A100").decisions.empty());
  EXPECT_TRUE(build_report(db, "A100").fusions.empty());
  const Report other_shape =
      build_report(db, "", std::vector<MatmulShapeKey>{{4096, 4096, 128, true}});
  EXPECT_TRUE(other_shape.rows.empty());
  EXPECT_TRUE(other_shape.decisions.empty());
  EXPECT_TRUE(other_shape.fusions.empty());
  EXPECT_TRUE(other_shape.attention.empty());
  const Report attention_only =
      build_report(db, "", std::vector<MatmulShapeKey>{{128, 32, 8, false}});
  EXPECT_TRUE(attention_only.rows.empty());
  EXPECT_EQ(attention_only.attention.size(), 3u) << "the geometry's D, H, Hkv as K, N, group";
  EXPECT_TRUE(build_report(db, "A100").attention.empty());
  EXPECT_EQ(build_report(db, "", std::vector<MatmulShapeKey>{{4096, 12288, 128, true}}).rows.size(),
            3u);
  EXPECT_THROW(render_report(report, "pdf"), Error);
}

TEST(Report, HtmlIsSelfContained) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const std::string html = report_html(build_report(db, ""));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos);  // no link, font or image to fetch
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("&lt;sm_90&gt;"), std::string::npos);  // details are escaped
  EXPECT_NE(html.find("Matmul paths"), std::string::npos);
  EXPECT_NE(html.find("Projection fusion"), std::string::npos);
}

TEST(Report, MarkdownShowsThePathChosenPerBucket) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const std::string md = report_markdown(build_report(db, ""));
  EXPECT_NE(md.find("| q4_mma | mma (chosen) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| q4_matmul | gemv (chosen) |"), std::string::npos) << md;
  EXPECT_NE(md.find("gemv 80.25, mma 24.50, dequant_gemm 190.00"), std::string::npos) << md;
}

TEST(Report, FusionDecisionsInEveryFormat) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const Report report = build_report(db, "");
  const std::string md = report_markdown(report);
  EXPECT_NE(md.find("| 4096x12288 g128 act | 4096+4096+4096 | 16 | separate | 24.50 | 23.25 | "
                    "0.95x |"),
            std::string::npos)
      << md;
  const std::string csv = report_csv(report);
  EXPECT_NE(csv.find(",gemv,gemv,fused,15.500,16.250\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",0.50,gemv,,,,\n"), std::string::npos) << "M 2: no decision\n" << csv;
  const auto json = nlohmann::json::parse(report_json(report));
  ASSERT_EQ(json["fusions"].size(), 2u);
  EXPECT_EQ(json["fusions"][0]["choice"], "fused");
  EXPECT_EQ(json["fusions"][0]["parts"], "4096+4096+4096");
  EXPECT_DOUBLE_EQ(json["fusions"][0]["separate_us"].get<double>(), 16.25);
  EXPECT_NE(report_html(report).find("<td>separate</td><td>24.50</td><td>23.25</td>"),
            std::string::npos);
}

TEST(Report, AttentionDecisionsInEveryFormat) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  write_recorded_db(db);
  const Report report = build_report(db, "");
  ASSERT_EQ(report.attention.size(), 3u);
  EXPECT_EQ(report.attention[0].key.family, "attention_path");
  EXPECT_EQ(report.attention[0].decision.choice, "simt");
  EXPECT_EQ(report.attention[1].decision.config, "d128.bq64.bk64.st2") << "395 within 2% of 400";
  EXPECT_EQ(report.attention[2].key.family, "attention_split");
  EXPECT_EQ(report.attention[2].decision.choice, "sp128");
  const std::string md = report_markdown(report);
  EXPECT_NE(md.find("## Attention"), std::string::npos) << md;
  EXPECT_NE(md.find("| prefill | H32/8 D128 | 16 | simt | `d128.bq16.bk64.w2` | 14.25 | mma | "
                    "21.50 | 1.51x | mma 21.50, simt 14.25 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| decode | H32/8 D128 | 4096 | sp128 | `d128.sp128.t256.hb2` | 31.25 | "
                    "sp256 | 34.50 | 1.10x |"),
            std::string::npos)
      << md;
  const std::string csv = report_csv(report);
  EXPECT_NE(csv.find(",attention_split,128,32,8,0,4096,f16,d128.sp128.t256.hb2,sp256,31.250,,,"
                     "34.500,1.104,,,,,0.00,sp128,sp128,,,\n"),
            std::string::npos)
      << csv;
  const std::string header = csv.substr(0, csv.find('\n'));
  const std::string last = csv.substr(csv.rfind('\n', csv.size() - 2) + 1);
  EXPECT_EQ(std::count(last.begin(), last.end(), ','),
            std::count(header.begin(), header.end(), ','))
      << "an attention row has the winners' columns";
  const auto json = nlohmann::json::parse(report_json(report));
  ASSERT_EQ(json["attention"].size(), 3u);
  EXPECT_EQ(json["attention"][0]["kind"], "prefill");
  EXPECT_EQ(json["attention"][0]["heads"], 32);
  EXPECT_EQ(json["attention"][0]["kv_heads"], 8);
  EXPECT_EQ(json["attention"][0]["head_dim"], 128);
  EXPECT_EQ(json["attention"][0]["m_bucket"], 16);
  EXPECT_EQ(json["attention"][0]["choice"], "simt");
  EXPECT_DOUBLE_EQ(json["attention"][0]["alternatives_us"]["mma"].get<double>(), 21.5);
  EXPECT_EQ(json["attention"][2]["kind"], "decode");
  EXPECT_EQ(json["attention"][2]["default"], "sp256");
  const std::string html = report_html(report);
  EXPECT_NE(html.find("<h2>Attention</h2>"), std::string::npos);
  EXPECT_NE(html.find("<td>decode</td><td>H32/8 D128</td><td>4096</td><td>sp128</td>"),
            std::string::npos);
}

}  // namespace
}  // namespace q4jit
