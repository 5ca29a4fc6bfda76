// The --gpu-split planner (model/gpu/gpu_split.hpp), on the CPU: parsing the option's text and
// its one-line errors, assigning layer ranges from byte counts (exact fits, the head pushing the
// last layer on, a tied lm_head copied to another split, unused trailing splits left out, an
// empty split in the middle, a model that does not fit, a device that does not exist), and the
// byte counts of the default model. No GPU is needed.
#include <gtest/gtest.h>

#include <numeric>

#include "common/error.hpp"
#include "model/gpu/gpu_split.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

constexpr int64_t kMiB = 1024 * 1024;

// The message of the Error `run` throws ("" when it throws none).
template <typename Run>
std::string error_of(Run run) {
  try {
    run();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(GpuSplitParse, ListsGiBPerDeviceInOrder) {
  EXPECT_EQ(parse_gpu_split("20,24"), (std::vector<SplitRequest>{{20, 0}, {24, 1}}));
  EXPECT_EQ(parse_gpu_split(" 0.5@0 , 8@0 "), (std::vector<SplitRequest>{{0.5, 0}, {8, 0}}));
  // An entry without a device is on the device of its position, named ones or not before it.
  EXPECT_EQ(parse_gpu_split("1,2@0,3"), (std::vector<SplitRequest>{{1, 0}, {2, 0}, {3, 2}}));
  EXPECT_EQ(parse_gpu_split("1.25e1"), (std::vector<SplitRequest>{{12.5, 0}}));
  EXPECT_TRUE(parse_gpu_split("").empty());
  EXPECT_TRUE(parse_gpu_split("  ").empty());
}

TEST(GpuSplitParse, BadTextIsOneLineNamingIt) {
  EXPECT_EQ(error_of([] { parse_gpu_split("3,x"); }), "--gpu-split: '3,x': 'x' is not a number");
  EXPECT_EQ(error_of([] { parse_gpu_split("3,,4"); }), "--gpu-split: '3,,4': an entry is empty");
  EXPECT_EQ(error_of([] { parse_gpu_split("3,"); }), "--gpu-split: '3,': an entry is empty");
  EXPECT_EQ(error_of([] { parse_gpu_split("0"); }),
            "--gpu-split: '0': '0' GiB: must be more than 0");
  EXPECT_EQ(error_of([] { parse_gpu_split("1@x"); }),
            "--gpu-split: '1@x': 'x' is not a device ordinal (0, 1, ...)");
  for (const char* text : {"-1", "nan", "inf", "1@-1", "1@", "@1", "1GB", "1@0@1", "1 2"}) {
    const std::string message = error_of([&] { parse_gpu_split(text); });
    EXPECT_EQ(message.rfind(std::string("--gpu-split: '") + text + "': ", 0), 0u)
        << text << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// Six layers of 96 MiB weights and 16 MiB cache, a 64 MiB embedding, 1 MiB norm, 63 MiB lm_head:
// with the embedding, 4 layers are exactly 512 MiB (0.5 GiB).
ModelSizes six_layers(bool tied = false) {
  ModelSizes sizes;
  sizes.embedding = 64 * kMiB;
  sizes.final_norm = 1 * kMiB;
  sizes.tied = tied;
  sizes.lm_head = tied ? 0 : 63 * kMiB;
  sizes.layer_bytes.assign(6, 96 * kMiB);
  sizes.layer_cache.assign(6, 16 * kMiB);
  return sizes;
}

std::vector<std::pair<int, int>> ranges(const std::vector<SplitPlan>& plans) {
  std::vector<std::pair<int, int>> out;
  for (const SplitPlan& plan : plans) out.emplace_back(plan.first_layer, plan.end_layer);
  return out;
}

TEST(GpuSplitPlan, FillsSplitsInOrderWithExactFits) {
  const ModelSizes sizes = six_layers();
  // 0.5 GiB holds the embedding and exactly 4 layers; the rest (2 layers + 64 MiB head) goes on.
  const auto plans = plan_gpu_split(parse_gpu_split("0.5,1"), sizes, 2);
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_EQ(ranges(plans), (std::vector<std::pair<int, int>>{{0, 4}, {4, 6}}));
  EXPECT_EQ(plans[0].device, 0);
  EXPECT_EQ(plans[1].device, 1);
  EXPECT_TRUE(plans[0].embedding);
  EXPECT_FALSE(plans[0].head);
  EXPECT_FALSE(plans[1].embedding);
  EXPECT_TRUE(plans[1].head);
  EXPECT_EQ(plans[0].weight_bytes, (64 + 4 * 96) * kMiB);
  EXPECT_EQ(plans[0].cache_bytes, 4 * 16 * kMiB);
  EXPECT_EQ(plans[1].weight_bytes, (2 * 96 + 64) * kMiB);
  EXPECT_EQ(
      plans[0].weight_bytes + plans[0].cache_bytes + plans[1].weight_bytes + plans[1].cache_bytes,
      sizes.total());
  // One byte less than the exact fit moves the fourth layer on.
  const double short_gib = (512.0 * kMiB - 1) / (1024.0 * kMiB);
  const auto fewer = plan_gpu_split({{short_gib, 0}, {1, 0}}, sizes, 1);
  EXPECT_EQ(ranges(fewer), (std::vector<std::pair<int, int>>{{0, 3}, {3, 6}}));
}

TEST(GpuSplitPlan, TheHeadGoesWithTheLastLayer) {
  const ModelSizes sizes = six_layers();
  // Everything but the head fits in 64 + 6 * 112 = 736 MiB; the head's 64 MiB do not, so the last
  // layer moves to the second split with it.
  const auto plans = plan_gpu_split({{736.0 / 1024, 0}, {1, 0}}, sizes, 1);
  EXPECT_EQ(ranges(plans), (std::vector<std::pair<int, int>>{{0, 5}, {5, 6}}));
  EXPECT_EQ(plans[1].weight_bytes, (96 + 64) * kMiB);
  // With room for it, one split holds everything and the unused second one is left out.
  const auto one = plan_gpu_split({{800.0 / 1024, 0}, {1, 0}}, sizes, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_TRUE(one[0].embedding && one[0].head);
  EXPECT_EQ(one[0].weight_bytes + one[0].cache_bytes, sizes.total());
}

TEST(GpuSplitPlan, ATiedLmHeadIsCopiedToAnotherSplit) {
  const ModelSizes sizes = six_layers(true);
  const auto plans = plan_gpu_split(parse_gpu_split("0.5@0,1@0"), sizes, 1);
  ASSERT_EQ(plans.size(), 2u);
  // The last split holds 2 layers, the norm and a copy of the 64 MiB embedding.
  EXPECT_EQ(plans[1].weight_bytes, (2 * 96 + 1 + 64) * kMiB);
  const auto one = plan_gpu_split(parse_gpu_split("1"), sizes, 1);
  EXPECT_EQ(one[0].weight_bytes + one[0].cache_bytes, sizes.total());  // one table, not two
}

TEST(GpuSplitPlan, ThreeSplitsOnOneDevice) {
  const ModelSizes sizes = six_layers();
  // 64 + 2 * 112 = 288 MiB; 2 * 112 = 224 MiB; 2 * 112 + 64 = 288 MiB.
  const auto plans =
      plan_gpu_split({{288.0 / 1024, 0}, {224.0 / 1024, 0}, {288.0 / 1024, 0}}, sizes, 1);
  EXPECT_EQ(ranges(plans), (std::vector<std::pair<int, int>>{{0, 2}, {2, 4}, {4, 6}}));
  for (const SplitPlan& plan : plans) EXPECT_EQ(plan.device, 0);
}

TEST(GpuSplitPlan, ErrorsAreOneLine) {
  const ModelSizes sizes = six_layers();
  // 64 + 6 * 112 + 64 = 800 MiB against 2 * 0.25 GiB.
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("0.25,0.25"), sizes, 2); }),
            "--gpu-split: 800.0 MiB of weights and cache do not fit in 0.5 GiB (splits 0.25 + "
            "0.25)");
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("0.01"), sizes, 1); }),
            "--gpu-split: 800.0 MiB of weights and cache do not fit in 0.01 GiB (splits 0.01)");
  // A split before the last that cannot hold the next layer.
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("0.5@0,0.05@0,1@0"), sizes, 1); }),
            "--gpu-split: split 2 (0.05 GiB on GPU 0) holds no layer: layer 4 does not fit in it");
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("0.05,1"), sizes, 2); }),
            "--gpu-split: split 1 (0.05 GiB on GPU 0) holds no layer: layer 0 does not fit in it");
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("1,1"), sizes, 1); }),
            "--gpu-split: no GPU 1 (1 found)");
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("8@3"), sizes, 2); }),
            "--gpu-split: no GPU 3 (2 found)");
  ModelSizes none = sizes;
  none.layer_bytes.clear();
  none.layer_cache.clear();
  EXPECT_EQ(error_of([&] { plan_gpu_split(parse_gpu_split("1"), none, 1); }),
            "--gpu-split: the model has no layers to split");
}

TEST(GpuSplitPlan, BytesAreFormattedForMessages) {
  EXPECT_EQ(format_bytes(20 * kMiB), "20.0 MiB");
  EXPECT_EQ(format_bytes(int64_t(6.7 * 1024) * kMiB), "6.7 GiB");
}

// The default model's sizes as the engine uploads them: fp16 embedding and lm_head, equal layers,
// fp16 K and V cache per layer at the given positions.
TEST(GpuSplitPlan, ModelSizesOfTheDefaultModel) {
  const Model model = load_model(test::default_model_dir());
  const LlamaConfig& config = model.config;
  const ModelSizes sizes = model_sizes(model, 100);
  EXPECT_EQ(sizes.embedding, int64_t(config.vocab_size) * config.hidden_size * 2);
  EXPECT_FALSE(sizes.tied);
  EXPECT_EQ(sizes.lm_head, sizes.embedding);
  EXPECT_EQ(sizes.final_norm, config.hidden_size * 2);
  ASSERT_EQ(int(sizes.layer_bytes.size()), config.num_hidden_layers);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    EXPECT_EQ(sizes.layer_cache[l],
              2 * 2 * 100 * int64_t(config.num_key_value_heads) * config.head_dim);
    EXPECT_EQ(sizes.layer_bytes[l], sizes.layer_bytes[0]);
  }
  // 4-bit weights: a layer holds more than its parameters / 2 bytes (scales, zeros, x_map) and
  // less than as fp16.
  const int64_t C = config.hidden_size, F = config.intermediate_size;
  const int64_t kv = int64_t(config.num_key_value_heads) * config.head_dim;
  const int64_t parameters = C * (C + 2 * kv) + C * C + 3 * C * F;
  EXPECT_GT(sizes.layer_bytes[0], parameters / 2);
  EXPECT_LT(sizes.layer_bytes[0], parameters * 2);
  // Two splits on one device holding layers 0-2 and 3-5.
  const int64_t half = sizes.embedding + 3 * (sizes.layer_bytes[0] + sizes.layer_cache[0]);
  const double gib = double(half) / (1024.0 * kMiB);
  const auto plans = plan_gpu_split({{gib, 0}, {gib * 2, 0}}, sizes, 1);
  EXPECT_EQ(ranges(plans), (std::vector<std::pair<int, int>>{{0, 3}, {3, 6}}));
}

}  // namespace
}  // namespace q4jit
