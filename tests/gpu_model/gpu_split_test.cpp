// GpuEngine split over GPUs (--gpu-split), tested with every split on GPU 0: the default model
// (models/fixture) in two and three shards, whose budgets are computed from model_sizes so that
// the layers land exactly at chosen boundaries, gives the unsplit engine's logits (a chunked
// prompt, all logits, then 20 greedy decode steps, with graphs and without); memory is the
// unsplit engine's plus only the extra shards' activations; a split that does not fit, or names
// a device that does not exist, is a one-line Error; profile_step adds up the shards. Needs a GPU
// and NVRTC and skips with the reason otherwise.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "common/error.hpp"
#include "model/gpu/gpu_engine.hpp"
#include "model/gpu/gpu_split.hpp"
#include "model/weights.hpp"
#include "runtime/platform.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

constexpr int kPositions = 128;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// A GPU and NVRTC, or the reason there are none.
std::string gpu_unavailable() {
  auto backend = open_gpu_backend();
  if (!backend) return backend.error().what();
  if (backend.value()->device_count() == 0) return "no GPU: the backend reports no device";
  auto compiler = open_compiler();
  if (!compiler) return std::string("no NVRTC: ") + compiler.error().what();
  return "";
}

#define Q4JIT_REQUIRE_GPU() \
  if (const std::string reason = gpu_unavailable(); !reason.empty()) GTEST_SKIP() << reason

// One kernel store and (empty) tuning database for the process; defaults, no tuning, a short
// cache and chunks of 16 so that the prompt below is prefilled in three chunks.
GpuEngineOptions test_options() {
  static const test::TempDir kernels;
  GpuEngineOptions options;
  options.kernel_cache = kernels.path().string();
  options.tuning_db = (kernels / "tuning.sqlite3").string();
  options.tune = TuneMode::off;
  options.max_positions = kPositions;
  options.prefill_chunk = 16;
  return options;
}

// Splits on GPU 0 ending after the layers in `ends` (the last end is the layer count), each with
// exactly the GiB its layers, their cache and the embedding (first) or head (last) take.
std::vector<SplitRequest> split_at(const ModelSizes& sizes, const std::vector<int>& ends) {
  std::vector<SplitRequest> requests;
  int first = 0;
  for (size_t i = 0; i < ends.size(); ++i) {
    int64_t bytes = i == 0 ? sizes.embedding : 0;
    if (i + 1 == ends.size()) bytes += sizes.final_norm + (sizes.tied ? 0 : sizes.lm_head);
    for (int l = first; l < ends[i]; ++l) bytes += sizes.layer_bytes[l] + sizes.layer_cache[l];
    requests.push_back({double(bytes) / kGiB, 0});
    first = ends[i];
  }
  return requests;
}

std::vector<int32_t> random_tokens(int count, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> tokens(count);
  for (int32_t& token : tokens) token = id(rng);
  return tokens;
}

// Worst relative error of `second` against `first` over a 37-token prompt (all logits) and 20
// greedy steps chosen by `first`.
double worst_difference(Engine& first, Engine& second) {
  const int vocab = first.config().vocab_size;
  const std::vector<int32_t> prompt = random_tokens(37, vocab, 21);
  const std::vector<float> a = first.forward(prompt, true);
  const std::vector<float> b = second.forward(prompt, true);
  EXPECT_EQ(a.size(), b.size());
  double worst = test::logits_relative_error(b, a);
  int32_t next = test::argmax(std::span<const float>(a).last(size_t(vocab)));
  for (int step = 0; step < 20; ++step) {
    const auto step_a = first.forward(std::span<const int32_t>(&next, 1), false);
    const auto step_b = second.forward(std::span<const int32_t>(&next, 1), false);
    worst = std::max(worst, test::logits_relative_error(step_b, step_a));
    next = test::argmax(step_a);
  }
  return worst;
}

struct SplitVariant {
  const char* name;
  std::vector<int> ends;  // layer ends of the splits
  bool graphs = true;
};

class GpuSplit : public testing::TestWithParam<SplitVariant> {
 protected:
  void SetUp() override {
    Q4JIT_REQUIRE_GPU();
    model_ = load_model(test::default_model_dir());
    sizes_ = model_sizes(model_, kPositions);
  }
  GpuEngineOptions split_options() const {
    GpuEngineOptions options = test_options();
    options.graphs = GetParam().graphs;
    options.split = split_at(sizes_, GetParam().ends);
    return options;
  }
  Model model_;
  ModelSizes sizes_;
};

// The same kernels in the same order: identical logits where the kernels are deterministic. Some
// of them add fp32 partials with atomics (split-K GEMV, decode attention), whose order differs
// from run to run; two unsplit engines measure that, and where they differ at all the bound is
// the one the other engine tests allow for it.
TEST_P(GpuSplit, LogitsMatchTheUnsplitEngine) {
  GpuEngineOptions options = test_options();
  options.graphs = GetParam().graphs;
  GpuEngine unsplit(model_, options);
  GpuEngine twin(model_, options);
  GpuEngine split(model_, split_options());
  ASSERT_EQ(split.shards().size(), GetParam().ends.size());
  const double noise = worst_difference(unsplit, twin);
  unsplit.reset();
  const double error = worst_difference(unsplit, split);
  std::printf(
      "%s: split against unsplit %.2e (unsplit against itself %.2e), graphs replayed %lld\n",
      GetParam().name, error, noise, static_cast<long long>(split.stats().graph_replays));
  EXPECT_LE(error, noise == 0 ? 1e-6 : 2e-3);
  EXPECT_EQ(split.position(), 57);
  if (GetParam().graphs) {
    EXPECT_GE(split.stats().graph_replays, 19) << "decode steps replay captured graphs";
    EXPECT_GE(split.stats().graph_captures, int64_t(GetParam().ends.size())) << "a graph per shard";
  } else {
    EXPECT_EQ(split.stats().graph_replays, 0);
  }
}

// Layers where the budgets put them; weights and cache as unsplit; workspace: the unsplit
// engine's on the last shard (which holds the logits) plus the other shards' activations.
TEST_P(GpuSplit, MemoryIsTheUnsplitPlusOnlyActivations) {
  GpuEngine unsplit(model_, test_options());
  GpuEngine split(model_, split_options());
  const std::vector<GpuShardInfo> shards = split.shards();
  ASSERT_EQ(shards.size(), GetParam().ends.size());
  int first = 0;
  int64_t others = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    EXPECT_EQ(shards[i].device, 0);
    EXPECT_EQ(shards[i].first_layer, first);
    EXPECT_EQ(shards[i].end_layer, GetParam().ends[i]);
    EXPECT_EQ(shards[i].embedding, i == 0);
    EXPECT_EQ(shards[i].head, i + 1 == shards.size());
    first = shards[i].end_layer;
    if (i + 1 < shards.size()) others += shards[i].workspace_bytes;
    std::printf("split %zu: %s\n", i + 1, shards[i].describe().c_str());
  }
  EXPECT_EQ(split.weight_bytes(), unsplit.weight_bytes());
  EXPECT_EQ(split.cache_bytes(), unsplit.cache_bytes());
  EXPECT_EQ(shards.back().workspace_bytes, unsplit.workspace_bytes());
  EXPECT_EQ(split.workspace_bytes(), unsplit.workspace_bytes() + others);
  EXPECT_GT(others, 0);
  // The planner's sizes are the uploaded bytes (fused projections, the default decision).
  int64_t cache = 0;
  for (int64_t layer : sizes_.layer_cache) cache += layer;
  EXPECT_EQ(unsplit.weight_bytes(), sizes_.total() - cache);
  EXPECT_EQ(unsplit.cache_bytes(), cache);
  EXPECT_NE(split.device_name().find(" + "), std::string::npos) << split.device_name();
}

// Where a decode step's time goes, added over the shards.
TEST_P(GpuSplit, ProfileAddsTheShards) {
  GpuEngine split(model_, split_options());
  split.forward(random_tokens(8, model_.config.vocab_size, 22), false);
  const StepProfile decode = split.profile_step(1, 5);
  EXPECT_GT(decode.step_us, 0);
  bool lm_head = false;
  for (const auto& [category, us] : decode.categories_us) lm_head |= category == "lm_head";
  EXPECT_TRUE(lm_head);
  const StepProfile prefill = split.profile_step(16, 5);
  EXPECT_GT(prefill.step_us, 0);
  EXPECT_EQ(split.position(), 8);
}

INSTANTIATE_TEST_SUITE_P(Fixture, GpuSplit,
                         testing::Values(SplitVariant{"two", {3, 6}},
                                         SplitVariant{"three", {2, 4, 6}},
                                         SplitVariant{"three_no_graphs", {1, 5, 6}, false}),
                         [](const auto& info) { return std::string(info.param.name); });

// The errors of the plan, raised before anything is allocated.
TEST(GpuSplitErrors, ASplitThatDoesNotFitIsOneLine) {
  Q4JIT_REQUIRE_GPU();
  const Model model = load_model(test::default_model_dir());
  GpuEngineOptions options = test_options();
  // The first split holds some layers (the embedding is 4 MiB, a layer about 1.5), the second
  // none of the rest.
  options.split = parse_gpu_split("0.01@0,0.001@0");
  try {
    GpuEngine engine(model, options);
    ADD_FAILURE() << "a model that does not fit loaded";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind("--gpu-split: ", 0), 0u) << message;
    EXPECT_NE(message.find("do not fit in 0.011 GiB (splits 0.01 + 0.001)"), std::string::npos)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
  options.split = parse_gpu_split("1@0,1@99");
  try {
    GpuEngine engine(model, options);
    ADD_FAILURE() << "a split on GPU 99 loaded";
  } catch (const Error& error) {
    EXPECT_EQ(std::string(error.what()).rfind("--gpu-split: no GPU 99 (", 0), 0u) << error.what();
  }
}

}  // namespace
}  // namespace q4jit
