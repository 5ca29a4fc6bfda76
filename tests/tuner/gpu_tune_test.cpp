// On a GPU: a full tune of the fixture model (every path of every shape at the default M buckets
// 1..2048: gemv, q4_mma, dequant+gemm, and the path decision per bucket) within its budget, then
// a second run that finds everything stored and compiles 0 kernels (the service refuses any
// compile), times 0 and validates 0; every winner's kernels come from the store by the request a
// warm load makes, and MatmulChooser picks each stored decision. tune_missing() tunes only what is
// absent. The projection fusion decisions (qkv, gate_up: fused or separate per bucket) come from
// the path decisions' times, and a second run finds them stored. With Q4JIT_TUNE_7B=1 the same
// for the Llama-7B shapes, printing the numbers the issue asks for. Skips without a GPU.
// Environment (the lead's GPU batch):
//   Q4JIT_MODEL_DIR=<repo>/models/fixture Q4JIT_CACHE_DIR=/tmp/k Q4JIT_TUNE_BUDGET=60
//   [Q4JIT_TUNE_7B=1] q4jit_tuner_tests --gtest_filter='GpuTune.*'
#include <algorithm>
#include <cstdlib>
#include <map>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "runtime/platform.hpp"
#include "tests/support/test_support.hpp"
#include "tests/tuner/gpu_support.hpp"
#include "tuner/autotuner.hpp"
#include "tuner/model_shapes.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/projection_fusion.hpp"
#include "tuner/report.hpp"
#include "tuner/tune_missing.hpp"
#include "tuner/tuned_families.hpp"

namespace q4jit {
namespace {

using test::Gpu;
using test::open_gpu;

double budget_from_environment() {
  const char* budget = std::getenv("Q4JIT_TUNE_BUDGET");
  return budget ? std::atof(budget) : 60;
}

std::filesystem::path model_from_environment() {
  const char* model = std::getenv("Q4JIT_MODEL_DIR");
  return model ? std::filesystem::path(model) : test::default_model_dir();
}

// $Q4JIT_CACHE_DIR lets several runs share compiled kernels (the first one compiles).
KernelStoreOptions store_options(const test::TempDir& dir) {
  KernelStoreOptions options;
  const char* shared_store = std::getenv("Q4JIT_CACHE_DIR");
  options.dir = shared_store ? std::filesystem::path(shared_store) : dir / "kernels";
  return options;
}

TuneOptions tune_options(double budget) {
  TuneOptions options;
  options.budget_seconds = budget;
  options.progress = [](const std::string& line) { std::printf("tune: %s\n", line.c_str()); };
  return options;
}

void print_outcomes(const std::vector<ProblemOutcome>& outcomes) {
  for (const ProblemOutcome& o : outcomes) {
    const double speedup = o.winner.median_us > 0 && o.winner.default_us > 0
                               ? o.winner.default_us / o.winner.median_us
                               : 0;
    std::printf(
        "  %-47s %-10s %-44s %9.2f us default %9.2f us %5.2fx tried %3d failed %2d %5.2f s%s%s\n",
        o.key.shape_label().c_str(), o.projections.c_str(), o.winner.config.c_str(),
        o.winner.median_us, o.winner.default_us, speedup, o.winner.candidates_tried,
        o.winner.candidates_failed, o.winner.tuning_seconds,
        o.default_kept ? " (default kept)" : "",
        o.skipped.empty() ? "" : (" SKIPPED: " + o.skipped).c_str());
  }
}

void print_decisions(const std::vector<DecisionOutcome>& decisions) {
  for (const DecisionOutcome& d : decisions) {
    std::string alternatives;
    for (const auto& [name, us] : d.decision.alternatives)
      alternatives += " " + name + "=" + std::to_string(us).substr(0, 7);
    std::printf("  path K%-6lld N%-6lld m%-5d %-13s (default %-4s)%s%s\n", (long long)d.key.K,
                (long long)d.key.N, d.key.m_bucket, d.decision.choice.c_str(),
                d.decision.default_choice.c_str(), alternatives.c_str(),
                d.skipped.empty() ? "" : (" SKIPPED: " + d.skipped).c_str());
  }
}

void print_fusions(const std::vector<DecisionOutcome>& fusions) {
  for (const DecisionOutcome& f : fusions) {
    std::printf(
        "  fusion %-8s K%-6lld N%-6lld m%-5d %-9s parts %s: fused %.2f us, separate %.2f us%s\n",
        f.projections.c_str(), (long long)f.key.K, (long long)f.key.N, f.key.m_bucket,
        f.decision.choice.c_str(), f.decision.config.c_str(),
        alternative_us(f.decision, kFusedChoice), alternative_us(f.decision, kSeparateChoice),
        f.skipped.empty() ? "" : (" SKIPPED: " + f.skipped).c_str());
  }
}

// Each winner's kernels load from the store by the requests a warm load makes, with no compile,
// and their keys are the recorded ones.
void expect_winners_in_store(Gpu& gpu, KernelService& warm,
                             const std::vector<ProblemOutcome>& outcomes) {
  const CompileTarget target =
      select_target(gpu.backend->current_device().sm(), gpu.compiler->supported_archs());
  std::map<MatmulPath, std::unique_ptr<TunedFamily>> families;
  for (const ProblemOutcome& outcome : outcomes) {
    auto& family = families[outcome.path];
    if (!family) family = make_tuned_family(outcome.path, *gpu.backend, warm, {});
    std::string keys;
    for (const CompileRequest& request : family->winner_requests(outcome.winner.config, target)) {
      const Result<CompiledKernel> kernel = warm.get(request);
      ASSERT_TRUE(kernel.ok()) << outcome.winner.config << ": " << kernel.error().what();
      EXPECT_TRUE(kernel.value().from_store) << outcome.winner.config;
      keys += (keys.empty() ? "" : "+") + kernel.value().key;
    }
    EXPECT_EQ(keys, outcome.winner.kernel_key) << outcome.key.shape_label();
  }
  EXPECT_EQ(warm.counters().compiles, 0);
}

// MatmulChooser reads back every decision: the decided path and configuration, marked tuned.
void expect_chooser_follows_decisions(Gpu& gpu, const TuningDb& db,
                                      const std::vector<DecisionOutcome>& decisions) {
  const DeviceInfo& device = gpu.backend->current_device();
  const MatmulChooser chooser(&db, device_fingerprint(device, *gpu.compiler), device);
  for (const DecisionOutcome& d : decisions) {
    const MatmulShapeKey shape{d.key.K, d.key.N, d.key.group_size, d.key.act_order};
    const MatmulChoice choice = chooser.choose(shape, d.key.m_bucket);
    EXPECT_TRUE(choice.tuned) << d.key.shape_label();
    EXPECT_EQ(to_string(choice.path), d.decision.choice) << d.key.shape_label();
    EXPECT_NE(choice.describe().find(d.decision.config), std::string::npos)
        << d.key.shape_label() << ": " << choice.describe();
  }
}

// Tunes `shapes` into a fresh database and store, then checks the warm second run.
void tune_twice(Gpu& gpu, const std::vector<TuneShape>& shapes, double budget) {
  test::TempDir dir;
  const KernelStore store(store_options(dir));
  TuningDb db({dir / "tuning.sqlite3", {}});

  KernelService cold(*gpu.compiler, &store, KernelServiceOptions{});
  Autotuner first(*gpu.backend, cold, db, tune_options(budget));
  const std::vector<ProblemOutcome> outcomes = first.tune(shapes);
  print_outcomes(outcomes);
  print_decisions(first.decisions());
  print_fusions(first.fusions());
  const TuneCounters& counts = first.counters();
  std::printf(
      "first run: %lld problems, %lld tuned, %lld paths decided in %.1f s (budget %.0f s); %s; "
      "timings %lld, validations %lld, winner compiles %lld\n",
      (long long)counts.problems, (long long)counts.tuned, (long long)counts.decisions,
      counts.seconds, budget, cold.counters().summary().c_str(), (long long)counts.timings,
      (long long)counts.validations, (long long)counts.winner_compiles);
  EXPECT_EQ(counts.tuned, counts.problems);
  EXPECT_EQ(counts.decisions, int64_t(first.decisions().size()));
  EXPECT_EQ(counts.decisions, int64_t(shapes.size() * default_tune_buckets().size()));
  EXPECT_LT(counts.seconds, budget * 1.25 + 10);
  std::map<std::string, int> per_family;
  for (const ProblemOutcome& outcome : outcomes) {
    ++per_family[outcome.key.family];
    EXPECT_TRUE(outcome.tuned) << outcome.key.shape_label() << ": " << outcome.skipped;
    EXPECT_FALSE(outcome.winner.kernel_key.empty()) << outcome.key.shape_label();
    EXPECT_GT(outcome.winner.median_us, 0) << outcome.key.shape_label();
  }
  if (q4_mma_family().supports(gpu.backend->current_device().sm())) {
    EXPECT_EQ(per_family["q4_mma"], int(shapes.size()) * 8) << "buckets 16 .. 2048";
    EXPECT_EQ(per_family["dequant_gemm"], int(shapes.size()) * 8);
  }
  EXPECT_EQ(per_family["q4_matmul"], int(shapes.size()) * 5) << "buckets 1 .. 16";
  for (const DecisionOutcome& decision : first.decisions()) {
    EXPECT_TRUE(decision.decided) << decision.key.shape_label() << ": " << decision.skipped;
  }
  expect_chooser_follows_decisions(gpu, db, first.decisions());
  EXPECT_EQ(counts.fusions,
            int64_t(fused_projections(shapes).size() * default_tune_buckets().size()));
  EXPECT_EQ(counts.fusions, int64_t(first.fusions().size()));

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu.compiler, &store, no_compile);
  Autotuner second(*gpu.backend, warm, db, tune_options(budget));
  const std::vector<ProblemOutcome> again = second.tune(shapes);
  EXPECT_EQ(second.counters().from_db, second.counters().problems);
  EXPECT_EQ(second.counters().decisions_from_db, int64_t(second.decisions().size()));
  EXPECT_EQ(second.counters().fusions, 0);
  EXPECT_EQ(second.counters().fusions_from_db, int64_t(second.fusions().size()));
  EXPECT_EQ(second.counters().timings, 0);
  EXPECT_EQ(second.counters().validations, 0);
  EXPECT_EQ(warm.counters().compiles, 0);
  std::printf(
      "second run: %lld problems and %lld decisions from the database, compiles %lld, timings "
      "%lld, validations %lld, %.3f s\n",
      (long long)second.counters().from_db, (long long)second.counters().decisions_from_db,
      (long long)warm.counters().compiles, (long long)second.counters().timings,
      (long long)second.counters().validations, second.counters().seconds);
  expect_winners_in_store(gpu, warm, again);
}

TEST(GpuTune, FixtureModelThenWarmSecondRun) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, tuning not run: " << why;
  tune_twice(*gpu, model_matmul_shapes(model_from_environment()), budget_from_environment());
}

// The fixture's qkv and gate_up (q, k, v and gate, up share their permutations): each fusion is
// decided at buckets 1 and 16 from the times of the kernels the path decisions chose (fused
// against the sum of the parts), MatmulChooser::fuse follows bucket 1, and a second run finds every
// decision stored: 0 compiles, 0 timings, 0 validations, 0 fusions decided.
TEST(GpuTune, FixtureFusionDecidedThenStored) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, tuning not run: " << why;
  test::TempDir dir;
  const KernelStore store(store_options(dir));
  TuningDb db({dir / "tuning.sqlite3", {}});
  const std::vector<TuneShape> shapes = model_matmul_shapes(model_from_environment());
  const std::vector<FusedProjection> fused = fused_projections(shapes);
  ASSERT_EQ(fused.size(), 2u) << "the fixture fuses qkv and gate_up";
  TuneOptions options = tune_options(budget_from_environment() / 2);
  options.m_buckets = {1, 16};

  KernelService cold(*gpu->compiler, &store, KernelServiceOptions{});
  Autotuner first(*gpu->backend, cold, db, options);
  first.tune(shapes);
  print_fusions(first.fusions());
  EXPECT_EQ(first.counters().fusions, 4);
  ASSERT_EQ(first.fusions().size(), 4u);
  std::map<std::tuple<int64_t, int64_t, int>, double> chosen_us;  // K, N, bucket -> path's time
  for (const DecisionOutcome& d : first.decisions())
    chosen_us[{d.key.K, d.key.N, d.key.m_bucket}] = d.decision.median_us;
  const DeviceInfo& device = gpu->backend->current_device();
  const MatmulChooser chooser(&db, device_fingerprint(device, *gpu->compiler), device);
  for (const DecisionOutcome& f : first.fusions()) {
    ASSERT_TRUE(f.decided) << f.key.shape_label() << ": " << f.skipped;
    const auto named = std::find_if(fused.begin(), fused.end(), [&](const FusedProjection& p) {
      return p.name == f.projections;
    });
    ASSERT_NE(named, fused.end()) << f.projections;
    const FusedProjection& projection = *named;
    EXPECT_EQ(f.decision.config, fusion_parts_text(projection.parts));
    const auto time_of = [&](const MatmulShapeKey& shape) {
      return chosen_us[{shape.K, shape.N, f.key.m_bucket}];
    };
    double separate = 0;
    for (const MatmulShapeKey& part : projection.parts) separate += time_of(part);
    EXPECT_GT(separate, 0);
    EXPECT_DOUBLE_EQ(alternative_us(f.decision, kFusedChoice), time_of(projection.fused));
    EXPECT_DOUBLE_EQ(alternative_us(f.decision, kSeparateChoice), separate);
    if (f.key.m_bucket == 1) {
      EXPECT_EQ(chooser.fuse(projection.fused, projection.parts), f.decision.choice == "fused")
          << f.projections;
    }
  }

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu->compiler, &store, no_compile);
  Autotuner second(*gpu->backend, warm, db, options);
  second.tune(shapes);
  EXPECT_EQ(second.counters().fusions, 0);
  EXPECT_EQ(second.counters().fusions_from_db, 4);
  EXPECT_EQ(second.counters().timings, 0);
  EXPECT_EQ(second.counters().validations, 0);
  EXPECT_EQ(warm.counters().compiles, 0);
  ASSERT_EQ(second.fusions().size(), 4u);
  for (size_t i = 0; i < second.fusions().size(); ++i) {
    EXPECT_TRUE(second.fusions()[i].from_db);
    EXPECT_EQ(second.fusions()[i].decision.choice, first.fusions()[i].decision.choice);
  }
}

// tune_missing at load: nothing for an fp16 model; the first call tunes buckets 1 and 16, a
// second call with the same buckets does nothing (0 compiles, 0 timings, 0 validations), a third
// with bucket 64 added tunes only bucket 64's problems.
TEST(GpuTune, TuneMissingTunesOnlyWhatIsAbsent) {
  std::string why;
  std::optional<Gpu> gpu = open_gpu(why);
  if (!gpu) GTEST_SKIP() << "no GPU, tuning not run: " << why;
  test::TempDir dir;
  const KernelStore store(store_options(dir));
  TuningDb db({dir / "tuning.sqlite3", {}});
  const std::filesystem::path model = model_from_environment();
  const size_t shapes = model_matmul_shapes(model).size();
  TuneOptions options = tune_options(budget_from_environment() / 2);
  options.m_buckets = {1, 16};

  KernelService cold(*gpu->compiler, &store, KernelServiceOptions{});
  test::TempDir fp16;
  test::write_tiny_model(fp16.path(), 0, false);
  const TuneMissingResult dense = tune_missing(*gpu->backend, cold, db, fp16.path(), options);
  EXPECT_TRUE(dense.problems.empty()) << "fp16 weights: no q4 matmul to tune";
  EXPECT_EQ(dense.counters.timings, 0);

  const TuneMissingResult first = tune_missing(*gpu->backend, cold, db, model, options);
  EXPECT_EQ(first.counters.tuned, first.counters.problems);
  EXPECT_EQ(first.counters.decisions, int64_t(2 * shapes));
  const int64_t fused = int64_t(fused_projections(model_matmul_shapes(model)).size());
  EXPECT_EQ(first.counters.fusions, 2 * fused);
  EXPECT_EQ(int64_t(first.fusions.size()), 2 * fused);

  KernelServiceOptions no_compile;
  no_compile.assert_no_compile = true;
  KernelService warm(*gpu->compiler, &store, no_compile);
  const TuneMissingResult again = tune_missing(*gpu->backend, warm, db, model, options);
  EXPECT_EQ(again.counters.from_db, again.counters.problems);
  EXPECT_EQ(again.counters.tuned, 0);
  EXPECT_EQ(again.counters.timings, 0);
  EXPECT_EQ(again.counters.validations, 0);
  EXPECT_EQ(again.counters.decisions, 0);
  EXPECT_EQ(again.counters.fusions, 0);
  EXPECT_EQ(again.counters.fusions_from_db, 2 * fused);
  EXPECT_EQ(warm.counters().compiles, 0);

  options.m_buckets = {1, 16, 64};
  KernelService more(*gpu->compiler, &store, KernelServiceOptions{});
  const TuneMissingResult wider = tune_missing(*gpu->backend, more, db, model, options);
  EXPECT_EQ(wider.counters.from_db, first.counters.problems);
  EXPECT_EQ(wider.counters.decisions, int64_t(shapes));
  EXPECT_EQ(wider.counters.fusions, fused) << "bucket 64 only";
  for (const ProblemOutcome& outcome : wider.problems) {
    EXPECT_EQ(outcome.tuned, outcome.key.m_bucket == 64) << outcome.key.shape_label();
  }
  std::printf("tune_missing: %lld problems tuned, then %lld timings, then %lld tuned (bucket 64)\n",
              (long long)first.counters.tuned, (long long)again.counters.timings,
              (long long)wider.counters.tuned);
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
  tune_twice(*gpu, shapes, budget_from_environment());
}

}  // namespace
}  // namespace q4jit
