// On a GPU: a full tune of the fixture model within its budget, then a second run that finds
// every winner stored and compiles 0 kernels (the service refuses any compile) and times 0, and
// whose winners' kernels all come from the store. With Q4JIT_TUNE_7B=1 the same for the
// Llama-7B shapes (budget 60 s), printing the numbers the issue asks for. Skips without a GPU.
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

#include "runtime/platform.hpp"
#include "tests/support/test_support.hpp"
#include "tuner/autotuner.hpp"
#include "tuner/model_shapes.hpp"
#include "tuner/q4_matmul_runner.hpp"
#include "tuner/q4_matmul_tuning.hpp"

namespace q4jit {
namespace {

struct Gpu {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Compiler> compiler;
};

std::optional<Gpu> open_gpu(std::string& why) {
  auto backend = open_gpu_backend();
  if (!backend) {
    why = backend.error().what();
    return std::nullopt;
  }
  if (backend.value()->device_count() == 0) {
    why = "no GPU: no device";
    return std::nullopt;
  }
  auto compiler = open_compiler();
  if (!compiler) {
    why = compiler.error().what();
    return std::nullopt;
  }
  backend.value()->select_device(0);
  return Gpu{std::move(backend.value()), std::move(compiler.value())};
}

void print_outcomes(const std::vector<ProblemOutcome>& outcomes) {
  for (const ProblemOutcome& o : outcomes) {
    const double speedup = o.winner.median_us > 0 && o.winner.default_us > 0
                               ? o.winner.default_us / o.winner.median_us
                               : 0;
    std::printf(
        "  %-44s %-10s %-40s %8.2f us default %8.2f us %5.2fx tried %3d failed %2d %5.2f s%s%s\n",
        o.key.shape_label().c_str(), o.projections.c_str(), o.winner.config.c_str(),
        o.winner.median_us, o.winner.default_us, speedup, o.winner.candidates_tried,
        o.winner.candidates_failed, o.winner.tuning_seconds,
        o.default_kept ? " (default kept)" : "",
        o.skipped.empty() ? "" : (" SKIPPED: " + o.skipped).c_str());
  }
}

// Tunes `shapes` into a fresh database and store, then checks the warm second run.
void tune_twice(Gpu& gpu, const std::vector<TuneShape>& shapes, double budget) {
  test::TempDir dir;
  KernelStoreOptions store_options;
  // $Q4JIT_CACHE_DIR lets several runs share compiled kernels (the first one compiles).
  const char* shared_store = std::getenv("Q4JIT_CACHE_DIR");
  store_options.dir = shared_store ? std::filesystem::path(shared_store) : dir / "kernels";
  const KernelStore store(store_options);
  TuningDb db({dir / "tuning.sqlite3", {}});
  TuneOptions options;
  options.budget_seconds = budget;
  options.progress = [](const std::string& line) { std::printf("tune: %s\n", line.c_str()); };

  KernelService cold(*gpu.compiler, &store, KernelServiceOptions{});
  Autotuner first(*gpu.backend, cold, db, options);
  const std::vector<ProblemOutcome> outcomes = first.tune(shapes);
  print_outcomes(outcomes);
  const TuneCounters& counts = first.counters();
  std::printf(
      "first run: %lld problems, %lld tuned in %.1f s (budget %.0f s); %s; timings %lld, "
      "validations %lld\n",
      (long long)counts.problems, (long long)counts.tuned, counts.seconds, budget,
      cold.counters().summary().c_str(), (long long)counts.timings, (long long)counts.validations);
  EXPECT_EQ(counts.tuned, counts.problems);
  EXPECT_LT(counts.seconds, budget * 1.25 + 10);
  for (const ProblemOutcome& outcome : outcomes) {
    EXPECT_TRUE(outcome.tuned) << outcome.key.shape_label() << ": " << outcome.skipped;
    EXPECT_FALSE(outcome.winner.kernel_key.empty()) << outcome.key.shape_label();
    EXPECT_GT(outcome.winner.median_us, 0) << outcome.key.shape_label();
  }

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu.compiler, &store, no_compile);
  Autotuner second(*gpu.backend, warm, db, options);
  const std::vector<ProblemOutcome> again = second.tune(shapes);
  EXPECT_EQ(second.counters().from_db, second.counters().problems);
  EXPECT_EQ(second.counters().timings, 0);
  EXPECT_EQ(second.counters().validations, 0);
  EXPECT_EQ(warm.counters().compiles, 0);
  std::printf("second run: %lld problems from the database, compiles %lld, timings %lld, %.3f s\n",
              (long long)second.counters().from_db, (long long)warm.counters().compiles,
              (long long)second.counters().timings, second.counters().seconds);
  // A cold start loads each winner from the store by its recorded key: no NVRTC.
  const CompileTarget target =
      select_target(gpu.backend->current_device().sm(), gpu.compiler->supported_archs());
  for (const ProblemOutcome& outcome : again) {
    const Q4MatmulConfig cfg = q4_matmul_configs_by_name().at(outcome.winner.config);
    const Result<CompiledKernel> kernel = warm.get(q4_matmul_winner_request(cfg, target));
    ASSERT_TRUE(kernel.ok()) << outcome.winner.config << ": " << kernel.error().what();
    EXPECT_TRUE(kernel.value().from_store);
    EXPECT_EQ(kernel.value().key, outcome.winner.kernel_key);
  }
  EXPECT_EQ(warm.counters().compiles, 0);
}

TEST(GpuTune, FixtureModelThenWarmSecondRun) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, tuning not run: " << why;
  const char* model = std::getenv("Q4JIT_MODEL_DIR");
  const std::vector<TuneShape> shapes =
      model_matmul_shapes(model ? model : test::default_model_dir());
  const char* budget = std::getenv("Q4JIT_TUNE_BUDGET");
  tune_twice(*gpu, shapes, budget ? std::atof(budget) : 60);
}

TEST(GpuTune, Llama7bShapes) {
  if (!std::getenv("Q4JIT_TUNE_7B"))
    GTEST_SKIP() << "set Q4JIT_TUNE_7B=1 to tune the Llama-7B shapes (about a minute)";
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, tuning not run: " << why;
  const std::vector<TuneShape> shapes = {{"k,v,q,o", {4096, 4096, 128, false}},
                                         {"qkv", {4096, 12288, 128, false}},
                                         {"gate,up", {4096, 11008, 128, false}},
                                         {"gate_up", {4096, 22016, 128, false}},
                                         {"down", {11008, 4096, 128, false}}};
  tune_twice(*gpu, shapes, 60);
}

}  // namespace
}  // namespace q4jit
