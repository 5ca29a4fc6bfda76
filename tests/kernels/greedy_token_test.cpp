// greedy_token (kernel_sources/greedy_token.cu): the descriptor (no GPU), every variant compiling
// through NVRTC for each architecture the engine targets (no GPU), and on a GPU every variant
// against the host's argmax (model/sampling.hpp) on random logits with planted ties, NaNs and
// infinities, its step inputs advanced by exactly one.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernel_sources/greedy_token.hpp"
#include "model/sampling.hpp"
#include "runtime/kernel_service.hpp"
#include "runtime/platform.hpp"
#include "tests/kernels/kernel_test_support.hpp"

namespace q4jit {
namespace {

TEST(GreedyTokenFamily, DescriptorAndLegality) {
  const KernelFamily family = greedy_token_family();
  EXPECT_EQ(family.source, "greedy_token.cu");
  ASSERT_EQ(family.all_variants.size(), 3u);
  EXPECT_EQ(family.default_variants[0].name_expression, "greedy_token_kernel<1024>");
  DeviceInfo device;
  device.max_threads_per_block = 512;
  EXPECT_EQ(space(device, 32000).size(), 2u) << "1024 threads exceed the device";
  EXPECT_TRUE(space(device, 0).empty());
  EXPECT_EQ(to_string(GreedyTokenConfig{256}), "bt256");
}

TEST(GreedyTokenCompile, EveryVariantForEachArchitecture) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const KernelFamily family = greedy_token_family();
  for (int sm : {75, 80, 90}) {
    CompileRequest request = make_request(family, family.all_variants[0], {sm, false});
    for (size_t i = 1; i < family.all_variants.size(); ++i)
      request.name_expressions.push_back(family.all_variants[i].name_expression);
    const Result<CompiledKernel> result = service.get(request);
    EXPECT_TRUE(result) << "sm_" << sm << ": " << (result ? "" : result.error().describe());
  }
}

// Random logits, with the maximum planted at `ties` ids (the lowest must win), NaNs sprinkled
// (never winning over numbers) and, when `all_nan`, nothing but NaN (the last id wins).
std::vector<float> planted_logits(int V, int ties, bool all_nan, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> logits(static_cast<size_t>(V));
  for (float& value : logits)
    value = all_nan ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
  if (all_nan) return logits;
  std::uniform_int_distribution<int> id(0, V - 1);
  for (int i = 0; i < V / 100 + 1; ++i) logits[size_t(id(rng))] = std::nanf("");
  logits[size_t(id(rng))] = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < ties; ++i) logits[size_t(id(rng))] = 100.0f;
  return logits;
}

class GreedyTokenGpu : public test::GpuTest {};

TEST_F(GreedyTokenGpu, EveryVariantMatchesTheHostArgmax) {
  if (IsSkipped()) return;
  KernelService service(*compiler_, nullptr);
  const KernelFamily family = greedy_token_family();
  const CompileTarget target =
      select_target(backend_->current_device().sm(), compiler_->supported_archs());
  std::mt19937 rng(515);
  int launches = 0;
  for (const GreedyTokenConfig& cfg : greedy_token_configs()) {
    const KernelVariant variant{to_string(cfg), name_expression(cfg)};
    const Result<CompiledKernel> compiled = service.get(make_request(family, variant, target));
    ASSERT_TRUE(compiled) << compiled.error().describe();
    const LoadedModule module = backend_->load_module(compiled.value());
    for (int V : {1, 31, 4096, 32000, 128256}) {
      for (int ties : {0, 1, 3}) {
        for (bool all_nan : {false, true}) {
          const std::vector<float> logits = planted_logits(V, ties, all_nan, rng);
          const DeviceBuffer device_logits = upload(logits);
          const std::vector<int32_t> inputs = {-7, 41, 42};  // token (poison), position, length
          const DeviceBuffer step = upload(inputs);
          const LaunchGeometry geometry{{1, 1, 1}, {unsigned(cfg.block_threads), 1, 1}};
          launch_kernel(*backend_, module.function(variant.name_expression), geometry, {},
                        step.raw(), device_logits.raw(), V);
          std::vector<int32_t> got(3);
          backend_->copy_to_host(got.data(), step.raw(), 12, {});
          backend_->synchronize({});
          ++launches;
          const std::string label = variant.config + " V" + std::to_string(V) + " ties " +
                                    std::to_string(ties) + (all_nan ? " all NaN" : "");
          EXPECT_EQ(got[0], argmax(logits)) << label;
          EXPECT_EQ(got[1], 42) << label;
          EXPECT_EQ(got[2], 43) << label;
        }
      }
    }
  }
  std::printf("greedy_token GPU check on %s: %d launches against the host argmax\n",
              backend_->current_device().name.c_str(), launches);
}

}  // namespace
}  // namespace q4jit
