// On a GPU: the attention decisions of the fixture model's geometry (8 heads, 4 KV heads, D 64).
// A first run decides every bucket (decode lengths 64 .. 1024, prefill rows 2 .. 1024), each
// decision legal, by the 2% rule against today's rule, readable by load_attention_choice, and its
// kernel a kernel-store hit by the request a load makes; a second run finds them all stored: 0
// compiles, 0 timings, 0 validations. Through tune_missing the counts show up in the tuner's
// counters (decided, then stored). Skips without a GPU.
// Environment (the lead's GPU batch):
//   Q4JIT_MODEL_DIR=<repo>/models/fixture q4jit_tuner_tests --gtest_filter='GpuAttention.*'
#include <cstdlib>

#include <gtest/gtest.h>

#include "runtime/platform.hpp"
#include "tests/support/test_support.hpp"
#include "tests/tuner/gpu_support.hpp"
#include "tuner/attention_path_choice.hpp"
#include "tuner/attention_path_tuner.hpp"
#include "tuner/attention_runner.hpp"
#include "tuner/tune_missing.hpp"

namespace q4jit {
namespace {

using test::Gpu;
using test::open_gpu;

std::filesystem::path model_from_environment() {
  const char* model = std::getenv("Q4JIT_MODEL_DIR");
  return model ? std::filesystem::path(model) : test::default_model_dir();
}

void print(const std::vector<DecisionOutcome>& outcomes) {
  for (const DecisionOutcome& o : outcomes) {
    std::string alternatives;
    for (const auto& [name, us] : o.decision.alternatives)
      alternatives += " " + name + "=" + std::to_string(us).substr(0, 7);
    std::printf("  %-8s %-6d %-6s %-22s %9.2f us (default %s %.2f us)%s%s\n", o.projections.c_str(),
                o.key.m_bucket, o.decision.choice.c_str(), o.decision.config.c_str(),
                o.decision.median_us, o.decision.default_choice.c_str(), o.decision.default_us,
                alternatives.c_str(), o.skipped.empty() ? "" : (" SKIPPED: " + o.skipped).c_str());
  }
}

// Every decision names a kernel GpuOps can run here, taken by the 2% rule.
void expect_sound(const Gpu& gpu, const AttentionGeometry& geometry,
                  const std::vector<DecisionOutcome>& outcomes) {
  const DeviceInfo& device = gpu.backend->current_device();
  const auto splits = decode_split_configs(
      device, {geometry.heads, geometry.kv_heads, geometry.head_dim, geometry.max_positions});
  for (const DecisionOutcome& o : outcomes) {
    const DecisionRecord& d = o.decision;
    ASSERT_FALSE(d.choice.empty()) << o.key.shape_label() << ": " << o.skipped;
    EXPECT_GT(d.median_us, 0) << o.key.shape_label();
    // Another kernel than the default's (whose time median_us then equals) won by more than 2%.
    if (d.default_us > 0 && d.median_us != d.default_us) {
      EXPECT_LT(d.median_us * 1.02, d.default_us) << o.key.shape_label();
    }
    if (o.projections == "decode") {
      const std::optional<int> split = parse_split_choice(d.choice);
      ASSERT_TRUE(split) << d.choice;
      ASSERT_TRUE(splits.count(*split)) << d.choice;
      EXPECT_EQ(to_string(splits.at(*split)), d.config);
      continue;
    }
    const std::optional<PrefillChoice> choice = parse_prefill_choice(d.choice, d.config);
    ASSERT_TRUE(choice) << d.choice << " " << d.config;
    EXPECT_TRUE(choice->legal(
        device, {o.key.m_bucket, 0, geometry.heads, geometry.kv_heads, geometry.head_dim, 0, 0}))
        << d.config;
  }
}

TEST(GpuAttention, DecidedThenStored) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, attention not tuned: " << why;
  test::TempDir dir;
  KernelStoreOptions store_options;
  store_options.dir = dir / "kernels";
  const KernelStore store(store_options);
  TuningDb db({dir / "tuning.sqlite3", {}});
  const AttentionGeometry geometry = model_attention_geometry(model_from_environment(), 1024);
  AttentionTuneOptions options;
  options.progress = [](const std::string& line) { std::printf("attention: %s\n", line.c_str()); };

  KernelService cold(*gpu->compiler, &store, KernelServiceOptions{});
  AttentionTuneCounters first;
  const std::vector<DecisionOutcome> outcomes =
      tune_attention(*gpu->backend, cold, db, geometry, options, first);
  print(outcomes);
  std::printf("first run: %lld decided in %.1f s, %lld validations, %lld timings; %s\n",
              (long long)first.decided, first.seconds, (long long)first.validations,
              (long long)first.timings, cold.counters().summary().c_str());
  ASSERT_EQ(outcomes.size(), 5u + 10u) << "decode 64 .. 1024, prefill 2 .. 1024";
  EXPECT_EQ(first.decided, int64_t(outcomes.size()));
  EXPECT_GE(first.validations, first.decided);
  expect_sound(*gpu, geometry, outcomes);

  const DeviceInfo& device = gpu->backend->current_device();
  const DeviceFingerprint fingerprint = device_fingerprint(device, *gpu->compiler);
  const AttentionChoice choice = load_attention_choice(&db, fingerprint, device, geometry);
  EXPECT_EQ(choice.decode_split.size(), 5u);
  EXPECT_EQ(choice.prefill.size(), 10u);

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu->compiler, &store, no_compile);
  const CompileTarget target = select_target(device.sm(), gpu->compiler->supported_archs());
  for (const auto& [bucket, prefill] : choice.prefill) {
    const Result<CompiledKernel> kernel =
        warm.get(make_request(prefill_family(prefill.path), prefill_variant(prefill), target));
    ASSERT_TRUE(kernel.ok()) << prefill.config() << ": " << kernel.error().what();
    EXPECT_TRUE(kernel.value().from_store) << prefill.config();
  }

  AttentionTuneCounters second;
  const std::vector<DecisionOutcome> again =
      tune_attention(*gpu->backend, warm, db, geometry, options, second);
  EXPECT_EQ(second.from_db, int64_t(again.size()));
  EXPECT_EQ(second.decided, 0);
  EXPECT_EQ(second.timings, 0);
  EXPECT_EQ(second.validations, 0);
  EXPECT_EQ(warm.counters().compiles, 0);
  for (size_t i = 0; i < again.size() && i < outcomes.size(); ++i)
    EXPECT_EQ(again[i].decision.config, outcomes[i].decision.config);
  std::printf("second run: %lld from the database, compiles %lld, timings %lld, %.3f s\n",
              (long long)second.from_db, (long long)warm.counters().compiles,
              (long long)second.timings, second.seconds);
}

// tune_missing at load decides the attention of the model once: buckets 1 and 16 and a 256-position
// cache give decode 64, 128, 256 and prefill 16; the second call finds them stored.
TEST(GpuAttention, TuneMissingDecidesOnce) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, attention not tuned: " << why;
  test::TempDir dir;
  KernelStoreOptions store_options;
  store_options.dir = dir / "kernels";
  const KernelStore store(store_options);
  TuningDb db({dir / "tuning.sqlite3", {}});
  TuneOptions options;
  options.budget_seconds = 40;
  options.m_buckets = {1, 16};

  KernelService cold(*gpu->compiler, &store, KernelServiceOptions{});
  const TuneMissingResult first =
      tune_missing(*gpu->backend, cold, db, model_from_environment(), options, 256);
  print(first.attention);
  EXPECT_EQ(first.counters.attention, 4);
  EXPECT_EQ(first.attention.size(), 4u);

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu->compiler, &store, no_compile);
  const TuneMissingResult again =
      tune_missing(*gpu->backend, warm, db, model_from_environment(), options, 256);
  EXPECT_EQ(again.counters.attention, 0);
  EXPECT_EQ(again.counters.attention_from_db, 4);
  EXPECT_EQ(again.counters.timings, 0);
  EXPECT_EQ(again.counters.validations, 0);
  EXPECT_EQ(warm.counters().compiles, 0);
}

}  // namespace
}  // namespace q4jit
