// Decode and prompt speed of the GPU engine on a synthetic Llama-7B-shaped GPTQ model, with where
// a decode step's time goes. Not a bound (speed claims come from `q4jit bench`): it runs only
// when Q4JIT_ENGINE_SPEED=1 (it writes a 3.9 GB model first) and prints what it measured.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "model/gpu/gpu_engine.hpp"
#include "model/synth.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void measure(const Model& model, const std::string& label) {
  GpuEngineOptions options;
  options.max_positions = 2048;
  auto start = std::chrono::steady_clock::now();
  GpuEngine engine(model, options);
  std::printf("%s: engine ready in %.1f s, weights %.2f GB, cache %.2f GB\n", label.c_str(),
              seconds_since(start), engine.weight_bytes() / 1e9, engine.cache_bytes() / 1e9);
  std::vector<int32_t> prompt(1920);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(100 + i * 7 % 31000);
  start = std::chrono::steady_clock::now();
  engine.forward(prompt, false);
  const double prompt_seconds = seconds_since(start);
  int32_t token = 5;
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 128; ++i) engine.forward(std::span<const int32_t>(&token, 1), false);
  const double long_seconds = seconds_since(start);
  engine.reset();
  const std::vector<int32_t> short_prompt = {1, 2, 3, 4};
  engine.forward(short_prompt, false);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 128; ++i) engine.forward(std::span<const int32_t>(&token, 1), false);
  const double short_seconds = seconds_since(start);
  std::printf(
      "%s: prompt 1920 tokens %.1f ms (%.0f tokens/s); 128 tokens after 1920: %.0f "
      "tokens/s; after 4: %.0f tokens/s\n",
      label.c_str(), 1e3 * prompt_seconds, 1920 / prompt_seconds, 128 / long_seconds,
      128 / short_seconds);
  for (int rows : {1, 512}) {
    const StepProfile profile = engine.profile_step(rows);
    std::printf("%s: step of %d rows at position %d: %.1f us; plain launches with events:",
                label.c_str(), rows, engine.position(), profile.step_us);
    for (const auto& [category, us] : profile.categories_us)
      std::printf(" %s %.1f", category.c_str(), us);
    std::printf(" (sum %.1f us)\n", profile.events_total_us);
    EXPECT_GT(profile.step_us, 0);
  }
  for (const std::string& line : engine.describe_choices()) std::printf("  %s\n", line.c_str());
}

TEST(GpuEngineSpeed, Llama7bShapes) {
  const char* enabled = std::getenv("Q4JIT_ENGINE_SPEED");
  if (!enabled || std::string(enabled) != "1") GTEST_SKIP() << "set Q4JIT_ENGINE_SPEED=1 to run";
  for (const auto& [group_size, act_order, name] :
       {std::tuple{128, true, "g128 act-order"}, std::tuple{32, false, "g32"},
        std::tuple{-1, false, "no-group"}}) {
    test::TempDir dir;
    SynthSpec spec;
    spec.config = tiny_config(32000);  // Llama-7B's shapes
    spec.config.hidden_size = 4096;
    spec.config.intermediate_size = 11008;
    spec.config.num_hidden_layers = 32;
    spec.config.num_attention_heads = 32;
    spec.config.num_key_value_heads = 32;
    spec.config.head_dim = 128;
    spec.config.max_position_embeddings = 4096;
    QuantizationConfig quantization;
    quantization.group_size = group_size;
    quantization.desc_act = act_order;
    spec.config.quantization = quantization;
    const auto start = std::chrono::steady_clock::now();
    write_synthetic_model(dir.path(), spec);
    const Model model = load_model(dir.path());
    std::printf("7B %s: written and loaded in %.1f s\n", name, seconds_since(start));
    measure(model, std::string("7B ") + name);
  }
}

}  // namespace
}  // namespace q4jit
