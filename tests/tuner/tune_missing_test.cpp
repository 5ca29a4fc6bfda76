// What the engine's --tune option and load-time tuning rely on without a GPU: parsing
// auto|off, the M buckets an engine with a given prefill chunk runs, and the default bucket list
// of q4jit tune, the attention geometry of a model. tune_missing() itself needs a GPU:
// tests/tuner/gpu_tune_test.cpp.
#include "tuner/tune_missing.hpp"

#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"
#include "tuner/path_decision.hpp"

namespace q4jit {
namespace {

TEST(TuneMissing, ParsesTuneMode) {
  EXPECT_EQ(parse_tune_mode("auto"), TuneMode::automatic);
  EXPECT_EQ(parse_tune_mode("off"), TuneMode::off);
  for (const char* bad : {"", "on", "Auto", "auto "}) {
    try {
      parse_tune_mode(bad);
      ADD_FAILURE() << "'" << bad << "' accepted";
    } catch (const Error& error) {
      EXPECT_EQ(std::string(error.what()),
                std::string("--tune: '") + bad + "' is not one of auto, off");
    }
  }
}

TEST(TuneMissing, EngineBucketsCoverDecodeAndEveryChunkSize) {
  EXPECT_EQ(engine_m_buckets(1), (std::vector<int>{1}));
  EXPECT_EQ(engine_m_buckets(0), (std::vector<int>{1})) << "decode only";
  EXPECT_EQ(engine_m_buckets(512), (std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}));
  EXPECT_EQ(engine_m_buckets(300).back(), 512) << "a 300-row chunk runs in the 512 bucket";
  for (int chunk = 1; chunk <= 4096; chunk = chunk * 3 + 1) {
    const std::vector<int> buckets = engine_m_buckets(chunk);
    for (int M = 1; M <= chunk; M = M * 2 + 1) {
      EXPECT_NE(std::find(buckets.begin(), buckets.end(), m_bucket(M)), buckets.end())
          << "chunk " << chunk << ", M " << M;
    }
  }
}

TEST(TuneMissing, DefaultBucketsSpanEveryPath) {
  const std::vector<int> buckets = default_tune_buckets();
  EXPECT_EQ(buckets.front(), 1);
  EXPECT_EQ(buckets.back(), 2048) << "a whole 1,920-token prompt in one chunk";
  EXPECT_NE(std::find(buckets.begin(), buckets.end(), kGemvMaxBucket), buckets.end());
  EXPECT_NE(std::find(buckets.begin(), buckets.end(), 512), buckets.end())
      << "the engine's default prefill chunk";
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  for (int bucket : buckets) EXPECT_EQ(m_bucket(bucket), bucket);
}

// The attention geometry tune_missing decides for: the fixture's 8 heads, 4 KV heads, D 64, up to
// its 2048 positions or the engine's shorter cache.
TEST(TuneMissing, AttentionGeometryOfTheModel) {
  const AttentionGeometry geometry = model_attention_geometry(test::default_model_dir());
  EXPECT_EQ(geometry.heads, 8);
  EXPECT_EQ(geometry.kv_heads, 4);
  EXPECT_EQ(geometry.head_dim, 64);
  EXPECT_EQ(geometry.max_positions, 2048);
  EXPECT_EQ(model_attention_geometry(test::default_model_dir(), 512).max_positions, 512);
  EXPECT_THROW(model_attention_geometry("/nonexistent/model"), Error);
}

}  // namespace
}  // namespace q4jit
