// Perplexity (../shared/docs/PERPLEXITY.md): the chunking rules on small JSONL and text files
// written here (length filter in code points, chunk limit, truncation, overlapping windows, short
// last window, errors naming the file and line), the score of a tiny random model against a hand
// computation from token-by-token forward logits, and the goldens: chunk and token counts on the
// WikiText sample, and the CPU reference's perplexity for each fixture within 0.05%.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/perplexity.hpp"
#include "model/ref/cpu_engine.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

const Tokenizer& tokenizer() {
  static const Tokenizer loaded = Tokenizer::load(test::fixture("tokenizer.model"));
  return loaded;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string record(const std::string& text) {
  return nlohmann::json{{"text", text}}.dump() + "\n";
}

std::string repeat(const std::string& unit, size_t count) {
  std::string text;
  for (size_t i = 0; i < count; ++i) text += unit;
  return text;
}

// Expects an Error whose message contains every one of `parts`.
template <typename F>
void expect_error_mentioning(F&& call, const std::vector<std::string>& parts) {
  try {
    call();
    FAIL() << "no error";
  } catch (const Error& error) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << error.what();
    }
  }
}

TEST(PerplexityChunks, JsonlFilterLimitAndTruncation) {
  test::TempDir dir;
  const std::string long_a = "The first record is long enough to pass the filter of fifty chars.";
  const std::string exactly_50 = repeat("abcde", 10);
  const std::string accents = repeat("\xC3\xA9", 30);  // 30 characters, 60 bytes: too short
  const std::string long_b = repeat("word ", 40);
  const std::string long_c =
      "A third long record, which the chunk limit of two leaves out entirely.";
  write_text(dir / "data.jsonl", record("short") + record(long_a) + "\n" + record(exactly_50) +
                                     record(accents) + record(long_b) + record(long_c));
  PerplexityOptions options;
  options.chunks = 2;
  options.chunk_size = 20;
  const auto chunks = perplexity_chunks(tokenizer(), dir / "data.jsonl", options, 2048);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], tokenizer().encode(long_a, false));
  auto b = tokenizer().encode(long_b, false);
  ASSERT_GT(b.size(), 20u);
  b.resize(20);
  EXPECT_EQ(chunks[1], b);
  // No limit: the third long record too; the chunk size is capped by the engine's positions.
  options.chunks = 0;
  const auto all = perplexity_chunks(tokenizer(), dir / "data.jsonl", options, 8);
  ASSERT_EQ(all.size(), 3u);
  for (const auto& chunk : all) EXPECT_LE(chunk.size(), 8u);
  // min_length 29 lets the 30-character record in (so length is counted in characters).
  options.min_length = 29;
  EXPECT_EQ(perplexity_chunks(tokenizer(), dir / "data.jsonl", options, 2048).size(), 5u);
}

TEST(PerplexityChunks, BadJsonLineIsAnErrorWithItsNumber) {
  test::TempDir dir;
  const fs::path path = dir / "bad.jsonl";
  write_text(path, record(repeat("fine text ", 10)) + "\n{\"text\": \"unterminated\n");
  expect_error_mentioning([&] { perplexity_chunks(tokenizer(), path, {}, 2048); },
                          {path.string(), "line 3"});
  write_text(path, record(repeat("fine text ", 10)) + "{\"title\": 5}\n");
  expect_error_mentioning([&] { perplexity_chunks(tokenizer(), path, {}, 2048); },
                          {path.string(), "line 2"});
}

TEST(PerplexityChunks, MissingFileAndNoChunksAreErrorsNamingTheFile) {
  test::TempDir dir;
  expect_error_mentioning([&] { perplexity_chunks(tokenizer(), dir / "absent.jsonl", {}, 2048); },
                          {(dir / "absent.jsonl").string()});
  write_text(dir / "short.jsonl", record("tiny") + record("also tiny"));
  expect_error_mentioning([&] { perplexity_chunks(tokenizer(), dir / "short.jsonl", {}, 2048); },
                          {(dir / "short.jsonl").string(), "no chunks"});
  write_text(dir / "empty.txt", "");
  expect_error_mentioning([&] { perplexity_chunks(tokenizer(), dir / "empty.txt", {}, 2048); },
                          {(dir / "empty.txt").string()});
}

TEST(PerplexityChunks, PlainTextWindowsWithOverlapAndShortLast) {
  test::TempDir dir;
  const std::string text = repeat("In the beginning was the word, and the word was long. ", 6);
  write_text(dir / "data.txt", text);
  const auto ids = tokenizer().encode(text, false);  // the whole file, once, no BOS
  ASSERT_GT(ids.size(), 40u);
  const size_t n = ids.size();
  PerplexityOptions options;
  options.chunk_size = 16;
  options.chunks = 0;
  for (const int overlap : {0, 5}) {
    options.overlap = overlap;
    const auto chunks = perplexity_chunks(tokenizer(), dir / "data.txt", options, 2048);
    const size_t step = 16 - overlap;
    size_t start = 0;
    for (size_t i = 0; i < chunks.size(); ++i, start += step) {
      const size_t end = std::min(n, start + 16);
      EXPECT_EQ(chunks[i], std::vector<int32_t>(ids.begin() + start, ids.begin() + end))
          << "window " << i << " overlap " << overlap;
    }
    // Windows until one reaches the end; the last is short unless the sizes line up.
    EXPECT_EQ(start - step + chunks.back().size(), n);
    EXPECT_LT(start - step, n);
    EXPECT_GE(start - step + 16, n);
  }
  options.chunks = 2;
  EXPECT_EQ(perplexity_chunks(tokenizer(), dir / "data.txt", options, 2048).size(), 2u);
  options.overlap = 16;
  EXPECT_THROW(perplexity_chunks(tokenizer(), dir / "data.txt", options, 2048), Error);
}

// -log softmax(logits)[target] in double.
double negative_log_probability(const std::vector<float>& logits, int32_t target) {
  double max = logits[0];
  for (const float value : logits) max = std::max(max, double(value));
  double sum = 0;
  for (const float value : logits) sum += std::exp(value - max);
  return -(logits[target] - max - std::log(sum));
}

TEST(Perplexity, TinyModelEqualsHandComputation) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 0, false, true, 3);
  const Model model = load_model(dir.path());
  std::mt19937 random(11);
  std::vector<std::vector<int32_t>> chunks = {{}, {}, {42}, {}};  // a 1-token chunk is skipped
  for (const size_t length : {9, 23}) {
    for (size_t i = 0; i < length; ++i) chunks[length == 9 ? 0 : 1].push_back(random() % 4096);
  }
  chunks[3] = {5, 900};

  CpuEngine engine(model);
  std::vector<int> progress;
  const auto result = perplexity(engine, chunks, [&](int done, int total) {
    EXPECT_EQ(total, 4);
    progress.push_back(done);
  });
  EXPECT_EQ(progress, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(result.chunks, 3);
  EXPECT_EQ(result.tokens_scored, 8 + 22 + 1);

  // By hand: one token at a time through the cache (a different path from the one all-logits
  // forward), so agreement is to fp32 rounding, not bit-exact.
  CpuEngine reference(model);
  double nll = 0;
  for (const auto& chunk : chunks) {
    reference.reset();
    for (size_t t = 0; t + 1 < chunk.size(); ++t) {
      nll += negative_log_probability(
          reference.forward(std::span<const int32_t>(&chunk[t], 1), false), chunk[t + 1]);
    }
  }
  EXPECT_NEAR(result.nll_sum, nll, 1e-4 * nll);
  EXPECT_NEAR(result.perplexity, std::exp(nll / 31), 1e-4 * result.perplexity);
}

TEST(PerplexityGolden, WikitextChunkAndTokenCounts) {
  Q4JIT_REQUIRE_SHARED(shared);
  const fs::path data = shared / "datasets/wikitext2_val_sample.jsonl";
  for (const auto& [chunk_size, tokens] : {std::pair{2048, 21708}, std::pair{512, 21512}}) {
    PerplexityOptions options;
    options.chunk_size = chunk_size;
    const auto chunks = perplexity_chunks(tokenizer(), data, options, 2048);
    int64_t scored = 0;
    for (const auto& chunk : chunks) scored += int64_t(chunk.size()) - 1;
    EXPECT_EQ(chunks.size(), 100u);
    EXPECT_EQ(scored, tokens) << "chunk " << chunk_size;
  }
}

// One test per fixture: each runs 100 chunks through the fp32 CPU reference (tens of seconds).
class PerplexityGoldenVariant : public testing::TestWithParam<std::string> {};

TEST_P(PerplexityGoldenVariant, WikitextChunk2048MatchesReference) {
  Q4JIT_REQUIRE_SHARED(shared);
  const std::string variant = GetParam();
  std::ifstream golden_file(shared / "models/golden" / ("ref_" + variant + ".json"));
  const auto golden = nlohmann::json::parse(golden_file)["ppl_wikitext2_val_sample_chunk2048"];
  const Model model = load_model(shared / "models" / ("fixture-" + variant));
  CpuEngine engine(model);
  const Tokenizer model_tokenizer = Tokenizer::load(model.dir);
  const auto chunks = perplexity_chunks(
      model_tokenizer, shared / "datasets/wikitext2_val_sample.jsonl", {}, engine.max_positions());
  const auto start = std::chrono::steady_clock::now();
  const auto result = perplexity(engine, chunks);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fixture-%s: %d chunks, %lld tokens, perplexity %.6f (reference %.6f), %.1f s\n",
              variant.c_str(), result.chunks, static_cast<long long>(result.tokens_scored),
              result.perplexity, golden["ppl"].get<double>(), seconds);
  EXPECT_EQ(result.chunks, golden["chunks"].get<int>());
  EXPECT_EQ(result.tokens_scored, golden["tokens_scored"].get<int64_t>());
  EXPECT_NEAR(result.perplexity, golden["ppl"].get<double>(), 5e-4 * golden["ppl"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PerplexityGoldenVariant,
                         testing::Values("fp16", "gptq-g128", "gptq-g128-act"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace q4jit
