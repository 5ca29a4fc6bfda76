// CpuEngine, the fp32 reference forward: (a) against the goldens in ../shared/models/golden
// (logits of Hugging Face and of a checked PyTorch transcription, greedy continuations), skipped
// when ../shared is absent; (b) always, on tiny random models (fp16, GPTQ act-order, no-group):
// the KV cache (token-by-token and chunked runs equal one whole-sequence run), reset(), and the
// max_positions limit. The ops themselves are tested in ref_ops_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "model/ref/cpu_engine.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

using test::argmax;

double relative_error(std::span<const float> actual, std::span<const float> expected) {
  return test::logits_relative_error(actual, expected);
}

// ----------------------------------------------------------------------------------------------
// (a) Goldens.

// Runs every sequence tokens.i of the file through one forward(all_logits) from an empty cache
// and compares with logits.i [T, V].
void expect_logits_match(CpuEngine& engine, const fs::path& golden_file, double tolerance) {
  const SafetensorsFile file(golden_file);
  int sequences = 0;
  for (int i = 0;; ++i) {
    const TensorView* tokens = file.find("tokens." + std::to_string(i));
    if (!tokens) break;
    const TensorView* expected = file.find("logits." + std::to_string(i));
    ASSERT_NE(expected, nullptr) << golden_file << ": logits." << i << " missing";
    const std::span<const int32_t> ids = tokens->as<int32_t>();
    ASSERT_EQ(expected->numel(), int64_t(ids.size()) * engine.config().vocab_size);
    engine.reset();
    const std::vector<float> logits = engine.forward(ids, true);
    const double error = relative_error(logits, expected->as<float>());
    EXPECT_LE(error, tolerance) << golden_file.filename() << " sequence " << i;
    ++sequences;
  }
  EXPECT_EQ(sequences, 4) << golden_file;
}

// Argmax decoding through the cache, one token per forward, must reproduce greedy_ids.
void expect_greedy_matches(CpuEngine& engine, const fs::path& golden_json) {
  std::ifstream in(golden_json);
  const nlohmann::json golden = nlohmann::json::parse(in);
  ASSERT_FALSE(golden.at("greedy").empty()) << golden_json;
  for (const nlohmann::json& entry : golden.at("greedy")) {
    const std::vector<int32_t> prompt = entry.at("prompt_ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> expected = entry.at("greedy_ids").get<std::vector<int32_t>>();
    engine.reset();
    std::vector<float> logits = engine.forward(prompt, false);
    for (size_t i = 0; i < expected.size(); ++i) {
      const int32_t next = argmax(logits);
      ASSERT_EQ(next, expected[i]) << golden_json.filename() << " prompt '"
                                   << entry.at("prompt").get<std::string>() << "' token " << i;
      logits = engine.forward(std::span<const int32_t>(&next, 1), false);
    }
  }
}

// fp32 on both sides: HF matches the PyTorch transcription to 7e-6 absolute (models/README.md),
// so 1e-4 relative leaves room only for summation order, not for a wrong op.
constexpr double kGoldenTolerance = 1e-4;

TEST(CpuEngineGolden, Fp16MatchesHuggingFaceLogits) {
  Q4JIT_REQUIRE_SHARED(shared);
  CpuEngine engine(load_model(shared / "models" / "fixture-fp16"));
  expect_logits_match(engine, shared / "models/golden/hf_fp16_logits.safetensors",
                      kGoldenTolerance);
  expect_greedy_matches(engine, shared / "models/golden/hf_fp16.json");
}

class CpuEngineVariant : public testing::TestWithParam<std::string> {};

TEST_P(CpuEngineVariant, MatchesReferenceLogitsAndGreedy) {
  Q4JIT_REQUIRE_SHARED(shared);
  const std::string variant = GetParam();
  CpuEngine engine(load_model(shared / "models" / ("fixture-" + variant)));
  const fs::path golden = shared / "models" / "golden";
  expect_logits_match(engine, golden / ("ref_" + variant + "_logits.safetensors"),
                      kGoldenTolerance);
  expect_greedy_matches(engine, golden / ("ref_" + variant + ".json"));
}

INSTANTIATE_TEST_SUITE_P(Golden, CpuEngineVariant,
                         testing::Values("fp16", "gptq-g128", "gptq-g128-act"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ----------------------------------------------------------------------------------------------
// (b) Tiny random models.

struct TinyModel {
  const char* name;
  int group_size;  // 0: fp16, -1: no-group GPTQ
  bool act_order;
};

class CpuEngineTiny : public testing::TestWithParam<TinyModel> {
 protected:
  void SetUp() override {
    test::write_tiny_model(dir_.path(), GetParam().group_size, GetParam().act_order);
    model_ = load_model(dir_.path());
  }
  // Random ids over the whole vocabulary, fixed seed.
  std::vector<int32_t> random_tokens(int count) const {
    std::mt19937 generator(42);
    std::uniform_int_distribution<int32_t> id(0, model_.config.vocab_size - 1);
    std::vector<int32_t> tokens(count);
    for (int32_t& token : tokens) token = id(generator);
    return tokens;
  }

  test::TempDir dir_;
  Model model_;
};

// The cache must make a token-by-token run and a chunked run compute what one forward over the
// whole sequence computes (only summation blocking differs: 1e-5).
TEST_P(CpuEngineTiny, IncrementalDecodeEqualsWholeSequence) {
  const int T = 23;
  const int V = model_.config.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(T);
  CpuEngine engine(model_);
  const std::vector<float> whole = engine.forward(tokens, true);  // [T, V]
  ASSERT_EQ(whole.size(), size_t(T) * V);
  EXPECT_EQ(engine.position(), T);

  engine.reset();
  std::vector<float> one_by_one;
  for (int t = 0; t < T; ++t) {
    const std::vector<float> row = engine.forward(std::span(tokens).subspan(t, 1), true);
    ASSERT_EQ(row.size(), size_t(V));
    one_by_one.insert(one_by_one.end(), row.begin(), row.end());
  }
  EXPECT_LE(relative_error(one_by_one, whole), 1e-5);

  engine.reset();  // chunks of 9, 1, 13 tokens: partial query blocks after a filled prefix
  std::vector<float> chunked = engine.forward(std::span(tokens).first(9), true);
  for (auto [first, count] : {std::pair{9, 1}, std::pair{10, 13}}) {
    const std::vector<float> part = engine.forward(std::span(tokens).subspan(first, count), true);
    chunked.insert(chunked.end(), part.begin(), part.end());
  }
  EXPECT_LE(relative_error(chunked, whole), 1e-5);

  // Without all_logits only the last row comes back.
  engine.reset();
  const std::vector<float> last = engine.forward(tokens, false);
  ASSERT_EQ(last.size(), size_t(V));
  EXPECT_LE(relative_error(last, std::span(whole).last(V)), 1e-6);
}

TEST_P(CpuEngineTiny, ResetEmptiesTheCache) {
  const std::vector<int32_t> tokens = random_tokens(12);
  CpuEngine engine(model_);
  const std::vector<float> first = engine.forward(tokens, true);
  const std::vector<float> continued = engine.forward(tokens, true);  // sees the first 12 too
  EXPECT_GT(relative_error(continued, first), 1e-3);
  engine.reset();
  EXPECT_EQ(engine.position(), 0);
  EXPECT_EQ(engine.forward(tokens, true), first);
}

TEST_P(CpuEngineTiny, ExceedingMaxPositionsThrowsAndKeepsTheCache) {
  const int limit = 16;
  const std::vector<int32_t> tokens = random_tokens(limit);
  CpuEngine engine(model_, limit);
  EXPECT_EQ(engine.max_positions(), limit);
  engine.forward(std::span(tokens).first(10), false);
  try {
    engine.forward(std::span(tokens).first(7), false);
    FAIL() << "forward past max_positions did not throw";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("max_positions 16"), std::string::npos)
        << error.what();
  }
  EXPECT_EQ(engine.position(), 10);
  // The cache is intact: finishing the sequence gives what a fresh run over all of it gives.
  const std::vector<float> finished = engine.forward(std::span(tokens).subspan(10), false);
  EXPECT_EQ(engine.position(), limit);
  CpuEngine fresh(model_, limit);
  EXPECT_LE(relative_error(finished, fresh.forward(tokens, false)), 1e-5);
  EXPECT_THROW(engine.forward(std::span(tokens).first(1), false), Error);
}

TEST_P(CpuEngineTiny, RejectsBadTokensWithoutChangingTheCache) {
  CpuEngine engine(model_);
  const std::vector<int32_t> bad{5, model_.config.vocab_size};
  EXPECT_THROW(engine.forward(bad, false), Error);
  const std::vector<int32_t> negative{-1};
  EXPECT_THROW(engine.forward(negative, false), Error);
  EXPECT_THROW(engine.forward({}, false), Error);
  EXPECT_EQ(engine.position(), 0);
  EXPECT_EQ(engine.max_positions(), model_.config.max_position_embeddings);
}

INSTANTIATE_TEST_SUITE_P(Formats, CpuEngineTiny,
                         testing::Values(TinyModel{"fp16", 0, false},
                                         TinyModel{"gptq_g32_act_order", 32, true},
                                         TinyModel{"gptq_no_group", -1, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace q4jit
