// Projection fusion decisions (tuner/projection_fusion.hpp) without a GPU: which fused shapes of
// a model's shape list have their parts, the decision with the 2% rule in favour of fusing on
// recorded times of the chosen kernels, and MatmulChooser::fuse reading a real tuning database
// (bucket 1 only, the parts must match, everything else fuses).
#include "tuner/projection_fusion.hpp"

#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/path_decision.hpp"

namespace q4jit {
namespace {

// The fixture model's shapes as model_matmul_shapes lists them (hidden 512, 8 heads of 64, 4 KV
// heads, intermediate 1408).
std::vector<TuneShape> fixture_shapes() {
  return {{"k,v", {512, 256, 128, false}},      {"q,o", {512, 512, 128, false}},
          {"qkv", {512, 1024, 128, false}},     {"gate,up", {512, 1408, 128, false}},
          {"gate_up", {512, 2816, 128, false}}, {"down", {1408, 512, 128, false}}};
}

bool same(const MatmulShapeKey& a, const MatmulShapeKey& b) {
  return a.K == b.K && a.N == b.N && a.group_size == b.group_size && a.act_order == b.act_order;
}

TEST(ProjectionFusion, FusedShapesWithTheirParts) {
  const std::vector<FusedProjection> fused = fused_projections(fixture_shapes());
  ASSERT_EQ(fused.size(), 2u);
  EXPECT_EQ(fused[0].name, "qkv");
  EXPECT_TRUE(same(fused[0].fused, {512, 1024, 128, false}));
  ASSERT_EQ(fused[0].parts.size(), 3u);
  EXPECT_EQ(fused[0].parts[0].N, 512) << "q";
  EXPECT_EQ(fused[0].parts[1].N, 256) << "k";
  EXPECT_EQ(fused[0].parts[2].N, 256) << "v";
  EXPECT_EQ(fusion_parts_text(fused[0].parts), "512+256+256");
  EXPECT_EQ(fused[1].name, "gate_up");
  EXPECT_EQ(fusion_parts_text(fused[1].parts), "1408+1408");

  const std::vector<TuneShape> llama7b = {{"k,v,q,o", {4096, 4096, 128, false}},
                                          {"qkv", {4096, 12288, 128, false}},
                                          {"gate,up", {4096, 11008, 128, false}},
                                          {"gate_up", {4096, 22016, 128, false}},
                                          {"down", {11008, 4096, 128, false}}};
  const std::vector<FusedProjection> big = fused_projections(llama7b);
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(fusion_parts_text(big[0].parts), "4096+4096+4096");
  EXPECT_EQ(fusion_parts_text(big[1].parts), "11008+11008");
}

TEST(ProjectionFusion, MissingOrMismatchedPartsAreLeftOut) {
  std::vector<TuneShape> no_up = fixture_shapes();
  no_up[3].projections = "gate";
  const std::vector<FusedProjection> fused = fused_projections(no_up);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0].name, "qkv");

  std::vector<TuneShape> other_group = fixture_shapes();
  other_group[0].shape.group_size = 64;  // k, v quantized otherwise: not the fused shape's parts
  EXPECT_EQ(fused_projections(other_group).size(), 1u);

  std::vector<TuneShape> wrong_sum = fixture_shapes();
  wrong_sum[2].shape.N = 1280;  // qkv wider than q + k + v
  EXPECT_EQ(fused_projections(wrong_sum).size(), 1u);

  std::vector<TuneShape> ambiguous = fixture_shapes();
  ambiguous.push_back({"q", {512, 768, 128, false}});  // two shapes of q with the same input
  EXPECT_EQ(fused_projections(ambiguous).size(), 1u);

  EXPECT_TRUE(fused_projections({{"q,k,v,o", {512, 512, 128, false}}}).empty());
}

TEST(ProjectionFusion, FusedUnlessSeparateIsMoreThanTwoPercentFaster) {
  const std::vector<double> parts = {6.0, 3.5, 3.5};  // 13 us separate
  const auto fused_wins = decide_fusion(10.0, parts, "512+256+256");
  ASSERT_TRUE(fused_wins);
  EXPECT_EQ(fused_wins->choice, "fused");
  EXPECT_EQ(fused_wins->config, "512+256+256");
  EXPECT_DOUBLE_EQ(fused_wins->median_us, 10.0);
  EXPECT_EQ(fused_wins->default_choice, "fused");
  EXPECT_DOUBLE_EQ(fused_wins->default_us, 10.0);
  ASSERT_EQ(fused_wins->alternatives.size(), 2u);
  EXPECT_EQ(fused_wins->alternatives[1].first, "separate");
  EXPECT_DOUBLE_EQ(fused_wins->alternatives[1].second, 13.0);

  const auto within = decide_fusion(13.2, parts, "512+256+256");  // 1.5% slower: fused kept
  ASSERT_TRUE(within);
  EXPECT_EQ(within->choice, "fused");

  const auto separate = decide_fusion(13.5, parts, "512+256+256");  // 3.8% slower
  ASSERT_TRUE(separate);
  EXPECT_EQ(separate->choice, "separate");
  EXPECT_DOUBLE_EQ(separate->median_us, 13.0);
  EXPECT_DOUBLE_EQ(separate->default_us, 13.5);
}

TEST(ProjectionFusion, NoDecisionWithoutEveryTime) {
  EXPECT_FALSE(decide_fusion(0.0, std::vector<double>{1.0, 2.0}, "a"));
  EXPECT_FALSE(decide_fusion(3.0, std::vector<double>{1.0, 0.0}, "a"));
  EXPECT_FALSE(decide_fusion(3.0, std::vector<double>{}, "a"));
}

TEST(ProjectionFusion, SourceHashCoversTheMatmulFamilies) {
  const std::string hash = projection_fusion_source_hash();
  EXPECT_EQ(hash.size(), 64u);
  EXPECT_EQ(hash, projection_fusion_source_hash());
  EXPECT_NE(hash, matmul_path_source_hash());
}

DeviceInfo h100() {
  DeviceInfo device;
  device.name = "NVIDIA H100 80GB HBM3";
  device.cc_major = 9;
  device.sm_count = 132;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = 227 * 1024;
  device.l2_bytes = 50 << 20;
  return device;
}

const DeviceFingerprint kFingerprint{"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
const MatmulShapeKey kQkv{4096, 6144, 128, false};
const std::vector<MatmulShapeKey> kParts = {
    {4096, 4096, 128, false}, {4096, 1024, 128, false}, {4096, 1024, 128, false}};

TuningKey fusion_key(int bucket, const DeviceFingerprint& device = kFingerprint,
                     const std::string& hash = projection_fusion_source_hash()) {
  return make_tuning_key(device, kProjectionFusionFamily, hash, kQkv, bucket);
}

DecisionRecord separate_record(const std::string& parts = "4096+1024+1024") {
  return *decide_fusion(20.0, std::vector<double>{10.0, 3.0, 3.0}, parts);
}

TEST(ProjectionFusionChooser, StoredDecisionAtBucketOne) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  const MatmulChooser chooser(&db, kFingerprint, h100());
  EXPECT_TRUE(chooser.fuse(kQkv, kParts)) << "nothing stored: the default fuses";
  db.save_decision(fusion_key(16), separate_record());
  EXPECT_TRUE(chooser.fuse(kQkv, kParts)) << "only bucket 1 fixes the layout";
  db.save_decision(fusion_key(1), separate_record());
  EXPECT_FALSE(chooser.fuse(kQkv, kParts));
  db.save_decision(fusion_key(1),
                   *decide_fusion(10.0, std::vector<double>{8.0, 3.0, 3.0}, "4096+1024+1024"));
  EXPECT_TRUE(chooser.fuse(kQkv, kParts));
  EXPECT_TRUE(MatmulChooser(nullptr, kFingerprint, h100()).fuse(kQkv, kParts));
}

TEST(ProjectionFusionChooser, OtherPartsDevicesAndSourcesAreIgnored) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  const MatmulChooser chooser(&db, kFingerprint, h100());
  db.save_decision(fusion_key(1), separate_record("2048+2048+2048"));
  EXPECT_TRUE(chooser.fuse(kQkv, kParts)) << "another split of the same fused N";
  DeviceFingerprint h200 = kFingerprint;
  h200.name = "NVIDIA H200";
  db.save_decision(fusion_key(1, h200), separate_record());
  EXPECT_TRUE(chooser.fuse(kQkv, kParts)) << "decided on another device";
  db.save_decision(fusion_key(1, kFingerprint, "stale"), separate_record());
  EXPECT_TRUE(chooser.fuse(kQkv, kParts)) << "decided with other kernel sources";
  EXPECT_FALSE(MatmulChooser(&db, h200, h100()).fuse(kQkv, kParts));
}

}  // namespace
}  // namespace q4jit
