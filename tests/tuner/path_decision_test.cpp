// Matmul path decisions (tuner/path_decision.hpp): which paths are tuned at each bucket, the
// default path agreeing with MatmulChooser's defaults, the decision with the 2% rule on recorded
// winners, family names and the decision's source hash. No GPU.
#include "tuner/path_decision.hpp"

#include <gtest/gtest.h>

#include "tuner/dequant_gemm_tuning.hpp"

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
  return device;
}

TEST(PathDecision, PathsTunedPerBucket) {
  using P = MatmulPath;
  EXPECT_EQ(tuned_paths(1, true), (std::vector<P>{P::gemv}));
  EXPECT_EQ(tuned_paths(8, true), (std::vector<P>{P::gemv}));
  EXPECT_EQ(tuned_paths(16, true), (std::vector<P>{P::gemv, P::mma, P::dequant_gemm}));
  EXPECT_EQ(tuned_paths(512, true), (std::vector<P>{P::mma, P::dequant_gemm}));
  EXPECT_EQ(tuned_paths(512, false), (std::vector<P>{P::gemv})) << "sm_75: gemv only";
}

// The decision's default path is what MatmulChooser takes without a database, at every M.
TEST(PathDecision, DefaultPathIsTheChoosersDefault) {
  const DeviceInfo device = h100();
  const MatmulChooser chooser(nullptr, {device.name, 90, 132, 13000, "13-0"}, device);
  const MatmulShapeKey shape{4096, 12288, 128, false};
  for (int64_t M : {1, 2, 5, 8, 9, 16, 17, 64, 300, 512, 2048}) {
    const MatmulChoice choice = chooser.choose(shape, M);
    EXPECT_EQ(choice.path, default_path(M, true)) << "M " << M;
    EXPECT_FALSE(choice.tuned);
  }
  EXPECT_EQ(default_path(512, false), MatmulPath::gemv);
}

TEST(PathDecision, FastestPathWinsBeyondTwoPercent) {
  const std::vector<PathTiming> timings = {{MatmulPath::gemv, "g", 30.0},
                                           {MatmulPath::mma, "m", 20.0},
                                           {MatmulPath::dequant_gemm, "d", 25.0}};
  const auto decision = decide_path(timings, MatmulPath::mma);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->choice, "mma");
  EXPECT_EQ(decision->config, "m");
  EXPECT_DOUBLE_EQ(decision->median_us, 20.0);
  EXPECT_EQ(decision->default_choice, "mma");
  EXPECT_DOUBLE_EQ(decision->default_us, 20.0);
  ASSERT_EQ(decision->alternatives.size(), 3u);
  EXPECT_EQ(decision->alternatives[2].first, "dequant_gemm");

  const auto gemv_wins =
      decide_path({{MatmulPath::gemv, "g", 18.0}, {MatmulPath::mma, "m", 20.0}}, MatmulPath::mma);
  ASSERT_TRUE(gemv_wins);
  EXPECT_EQ(gemv_wins->choice, "gemv") << "10% faster than the default path";
}

TEST(PathDecision, DefaultPathKeptWithinTwoPercent) {
  const auto decision = decide_path(
      {{MatmulPath::dequant_gemm, "d", 99.0}, {MatmulPath::mma, "m", 100.0}}, MatmulPath::mma);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->choice, "mma");
  EXPECT_DOUBLE_EQ(decision->default_us, 100.0);
}

TEST(PathDecision, MissingDefaultOrUntimedPaths) {
  const auto no_default = decide_path(
      {{MatmulPath::dequant_gemm, "d", 99.0}, {MatmulPath::mma, "m", 0.0}}, MatmulPath::mma);
  ASSERT_TRUE(no_default);
  EXPECT_EQ(no_default->choice, "dequant_gemm");
  EXPECT_EQ(no_default->default_us, 0.0);
  EXPECT_EQ(no_default->alternatives.size(), 1u) << "an untimed path is no alternative";
  EXPECT_FALSE(decide_path({}, MatmulPath::gemv));
  EXPECT_FALSE(decide_path({{MatmulPath::gemv, "g", 0.0}}, MatmulPath::gemv));
}

TEST(PathDecision, FamiliesAndSourceHash) {
  for (MatmulPath path : {MatmulPath::gemv, MatmulPath::mma, MatmulPath::dequant_gemm}) {
    EXPECT_EQ(path_of_family(family_of(path)), path);
    EXPECT_EQ(parse_matmul_path(to_string(path)), path);
  }
  EXPECT_EQ(family_of(MatmulPath::gemv), "q4_matmul");
  EXPECT_EQ(family_of(MatmulPath::mma), "q4_mma");
  EXPECT_EQ(family_of(MatmulPath::dequant_gemm), "dequant_gemm");
  EXPECT_FALSE(path_of_family("rms_norm"));
  EXPECT_FALSE(parse_matmul_path("fused"));
  const std::string hash = matmul_path_source_hash();
  EXPECT_EQ(hash.size(), 64u);
  EXPECT_EQ(hash, matmul_path_source_hash());
  EXPECT_NE(hash, dequant_gemm_source_hash());
  EXPECT_NE(hash, family_source_hash(q4_matmul_family()));
}

TEST(DequantGemmConfig, NamesRoundTripAndCandidates) {
  const DeviceInfo device = h100();
  const MatmulShapeKey shape{4096, 11008, 128, true};
  const auto defaults = dequant_gemm_candidates(device, shape, 512, false);
  ASSERT_EQ(defaults.size(), 1u);
  EXPECT_EQ(to_string(defaults.front().dequantize), to_string(DequantizeConfig{}));
  EXPECT_EQ(to_string(defaults.front().gemm),
            to_string(space(device, GemmShape{512, 4096, 11008}).front()));
  const auto whole = dequant_gemm_candidates(device, shape, 512, true);
  EXPECT_GT(whole.size(), 10u);
  for (const DequantGemmConfig& cfg : whole) {
    const auto parsed = parse_dequant_gemm(to_string(cfg));
    ASSERT_TRUE(parsed) << to_string(cfg);
    EXPECT_EQ(to_string(*parsed), to_string(cfg));
    EXPECT_TRUE(dequant_gemm_footprint(cfg, device, shape, 512).indivisible.empty());
  }
  EXPECT_FALSE(parse_dequant_gemm("bt256.tk64"));
  EXPECT_FALSE(parse_dequant_gemm("bt256.tk64+tm1.tn1"));
  EXPECT_FALSE(parse_dequant_gemm("+"));
  DeviceInfo turing = device;
  turing.cc_major = 7;
  turing.cc_minor = 5;
  EXPECT_TRUE(dequant_gemm_candidates(turing, shape, 512, false).empty());
}

}  // namespace
}  // namespace q4jit
