// The tensor-core prefill attention family (attention_prefill_mma). Without a GPU: its space,
// names, legality and geometry, and every configuration compiling through NVRTC for sm_80 and
// sm_90 (and refusing sm_75, below its declared minimum; skipped without NVRTC). On a GPU (sm_80+)
// every configuration against ref::attention on fresh random inputs: D 64 and 128, GQA (H 8,
// Hkv 2) and H = Hkv, T 1, 7, 64, 100, 513, p0 0, 37, 1000; outputs poisoned (NaN) first, cache
// rows past the sequence NaN (never to be read), out rows wider than H * D with the gap and one
// extra row that must stay poisoned. Bound: relative error <= 2e-3 over the whole output and over
// every single token's row (a wrong diagonal in one row of 513 would vanish in the whole-output
// norm). Then, not a bound, the time of each configuration on the Llama-7B shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "common/half.hpp"
#include "kernel_sources/attention_prefill_mma.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/batch_loader.hpp"

namespace q4jit {
namespace {

constexpr double kTolerance = 2e-3;
constexpr uint16_t kHalfNaN = 0xffff;

DeviceInfo sm_device(int sm, int64_t smem_optin = 227 * 1024) {
  DeviceInfo device;
  device.cc_major = sm / 10;
  device.cc_minor = sm % 10;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = smem_optin;
  return device;
}

TEST(AttentionPrefillMmaSpace, DefaultFirstNamesUniqueAndSmall) {
  const std::vector<AttentionPrefillMmaConfig> configs = attention_prefill_mma_configs();
  ASSERT_FALSE(configs.empty());
  EXPECT_EQ(to_string(configs.front()), "d128.bq64.bk64.st2");
  EXPECT_EQ(name_expression(configs.front()), "attention_prefill_mma_kernel<128, 64, 64, 2>");
  std::set<std::string> names, expressions;
  for (const AttentionPrefillMmaConfig& cfg : configs) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << to_string(cfg);
    EXPECT_TRUE(expressions.insert(name_expression(cfg)).second) << name_expression(cfg);
  }
  const KernelFamily family = attention_prefill_mma_family();
  EXPECT_EQ(family.all_variants.size(), configs.size());
  ASSERT_EQ(family.default_variants.size(), 2u) << "one per head dim";
  EXPECT_EQ(family.default_variants[0].config, "d64.bq64.bk64.st2");
  EXPECT_EQ(family.default_variants[1].config, "d128.bq64.bk64.st2");
  EXPECT_EQ(family.min_sm, 80);
  EXPECT_FALSE(family.amd) << "mma.sync, ldmatrix and cp.async are NVIDIA-only";
  EXPECT_EQ(find_kernel_family("attention_prefill_mma").source, "attention_prefill_mma.cu");
  // The space one shape sees (one head dim) stays small enough to tune at load.
  EXPECT_LE(attention_prefill_mma_space(sm_device(90), {512, 0, 32, 32, 128, 0, 0}).size(), 12u);
  EXPECT_EQ(attention_prefill_mma_space(sm_device(90), {512, 0, 32, 32, 64, 0, 0}).size(),
            configs.size() / 2);
}

TEST(AttentionPrefillMmaSpace, LegalityFollowsDeviceAndShape) {
  const DeviceInfo device = sm_device(80, 163 * 1024);
  const AttentionPrefillMmaConfig cfg;  // d128
  const AttentionPrefillShape shape{100, 37, 8, 2, 128, 0, 0};
  EXPECT_TRUE(legal(cfg, device, shape));
  EXPECT_FALSE(legal(cfg, sm_device(75), shape)) << "mma.sync m16n8k16 needs sm_80";
  EXPECT_FALSE(legal(cfg, DeviceInfo{}, shape)) << "AMD (no compute capability)";
  EXPECT_FALSE(legal(cfg, device, {100, 37, 8, 2, 64, 0, 0})) << "D";
  EXPECT_FALSE(legal(cfg, device, {100, 37, 8, 3, 128, 0, 0})) << "H % Hkv";
  EXPECT_FALSE(legal(cfg, device, {0, 37, 8, 2, 128, 0, 0})) << "no tokens";
  EXPECT_FALSE(legal(cfg, device, {1, -1, 8, 2, 128, 0, 0})) << "negative p0";
  EXPECT_FALSE(legal(cfg, device, {100, 37, 8, 2, 128, 8 * 128 + 4, 0})) << "q_stride % 8";
  EXPECT_TRUE(legal(cfg, device, {100, 37, 8, 2, 128, 12 * 128, 0})) << "a fused qkv row";
  EXPECT_FALSE(legal(cfg, device, {100, 37, 8, 2, 128, 0, 8 * 128 + 1})) << "odd out_stride";
  EXPECT_FALSE(legal(cfg, device, {100, 37, 8, 2, 128, 1000, 0})) << "q_stride below H * D";
  EXPECT_FALSE(legal(cfg, device, {100, (int64_t(1) << 31) - 50, 8, 2, 128, 0, 0}))
      << "positions past int";
  EXPECT_FALSE(legal(AttentionPrefillMmaConfig{128, 96, 64, 2}, device, shape)) << "bq";
  EXPECT_FALSE(legal(AttentionPrefillMmaConfig{128, 64, 64, 3}, device, shape)) << "stages";
  // 2 (128 + 2 * 2 * 64) * 136 = 104448 bytes: past an sm_86's 99 KB opt-in, within an A100's.
  const AttentionPrefillMmaConfig largest{128, 128, 64, 2};
  EXPECT_TRUE(legal(largest, device, shape));
  EXPECT_FALSE(legal(largest, sm_device(86, 99 * 1024), shape));
  EXPECT_TRUE(legal(AttentionPrefillMmaConfig{128, 64, 32, 2}, sm_device(86, 99 * 1024), shape));
}

TEST(AttentionPrefillMmaSpace, Geometry) {
  const AttentionPrefillShape shape{513, 1000, 32, 8, 128, 0, 0};
  const AttentionPrefillGeometry g = geometry(AttentionPrefillMmaConfig{}, shape);
  EXPECT_EQ(g.grid_x, 9u);
  EXPECT_EQ(g.grid_y, 32u);
  EXPECT_EQ(g.block_x, 128u);
  EXPECT_EQ(g.dynamic_smem_bytes, 2 * (64 + 2 * 2 * 64) * 136);
  const AttentionPrefillGeometry wide = geometry(AttentionPrefillMmaConfig{64, 128, 32, 1}, shape);
  EXPECT_EQ(wide.grid_x, 5u);
  EXPECT_EQ(wide.block_x, 256u);
  EXPECT_EQ(wide.dynamic_smem_bytes, 2 * (128 + 2 * 1 * 32) * 72);
}

TEST(AttentionPrefillMmaCompile, EveryConfigForSm80AndSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const KernelFamily family = attention_prefill_mma_family();
  std::vector<std::string> expressions;
  for (const KernelVariant& variant : family.all_variants)
    expressions.push_back(variant.name_expression);
  std::vector<CompileRequest> requests;
  for (int sm : {80, 90}) {
    for (CompileRequest& request : batched_requests(family, expressions, {sm, false}, 4))
      requests.push_back(std::move(request));
  }
  const auto started = std::chrono::steady_clock::now();
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  int failed = 0;
  const std::vector<Result<CompiledKernel>> results = service.get_all(requests, jobs);
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i]) {
      ++failed;
      ADD_FAILURE() << results[i].error().describe();
      continue;
    }
    for (const std::string& expression : requests[i].name_expressions)
      EXPECT_TRUE(results[i].value().lowered_name(expression).starts_with("_Z")) << expression;
  }
  std::printf(
      "attention_prefill_mma: %zu kernels in %zu programs for sm_80, sm_90 in %.1f s, %d "
      "failed\n",
      2 * expressions.size(), requests.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), failed);
  const auto old = service.get(make_request(family, family.default_variants[0], {75, false}));
  EXPECT_FALSE(old.ok()) << "compiles for sm_75 but declares sm_80";
}

// --- GPU

struct Heads {
  int H, Hkv, D;
};

// One layer's cache [P_max, Hkv, D]: random rows below `filled`, NaN rows after (never read),
// and the fp32 copy of the filled rows for the reference.
struct Cache {
  std::vector<uint16_t> keys, values;
  std::vector<float> keys_float, values_float;
};

Cache random_cache(const Heads& heads, int filled, int max_positions, std::mt19937& rng) {
  const size_t row = size_t(heads.Hkv) * heads.D;
  Cache cache;
  cache.keys = test::random_halves(size_t(filled) * row, 2.0f, rng);
  cache.values = test::random_halves(size_t(filled) * row, 2.0f, rng);
  cache.keys_float = test::to_floats(cache.keys);
  cache.values_float = test::to_floats(cache.values);
  cache.keys.resize(size_t(max_positions) * row, kHalfNaN);
  cache.values.resize(size_t(max_positions) * row, kHalfNaN);
  return cache;
}

// Norm of the difference over the norm of the reference for values [begin, end) of `want` and
// the matching row-strided values of `got`; NaN anywhere gives NaN.
double relative_error(const std::vector<uint16_t>& got, int64_t got_stride,
                      const std::vector<float>& want, int64_t width, int64_t first_row,
                      int64_t rows) {
  double difference = 0, norm = 0;
  for (int64_t t = first_row; t < first_row + rows; ++t) {
    for (int64_t i = 0; i < width; ++i) {
      const double d = double(half_to_float(got[t * got_stride + i])) - want[t * width + i];
      difference += d * d;
      norm += double(want[t * width + i]) * want[t * width + i];
    }
  }
  return std::sqrt(difference / norm);
}

class AttentionPrefillMmaGpu : public test::GpuTest {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();  // device 0 and NVRTC, or a skip with the printed reason
    if (IsSkipped()) return;
    if (!attention_prefill_mma_family().supports(device().sm()))
      GTEST_SKIP() << "sm_" << device().sm() << ": mma.sync m16n8k16 needs sm_80 or newer";
  }
  const DeviceInfo& device() const { return backend_->current_device(); }

  // Every variant, compiled and loaded, by name expression.
  std::map<std::string, Function> load_all() {
    KernelService service(*compiler_, nullptr);
    const KernelFamily family = attention_prefill_mma_family();
    std::vector<std::string> expressions;
    for (const KernelVariant& variant : family.all_variants)
      expressions.push_back(variant.name_expression);
    std::map<std::string, Function> functions;
    for (auto& [expression, loaded] :
         load_batched(*backend_, service, family, expressions, 4, jobs())) {
      if (!loaded) {
        ADD_FAILURE() << expression << ": " << loaded.error().describe();
        continue;
      }
      functions.emplace(expression, loaded.value().function);
      const FunctionAttributes attributes = backend_->attributes(loaded.value().function);
      std::printf("attention_prefill_mma %s: %d registers, %lld local bytes\n", expression.c_str(),
                  attributes.registers, static_cast<long long>(attributes.local_bytes));
      modules_.push_back(loaded.value().module);
    }
    return functions;
  }
  void launch(const Function& function, const AttentionPrefillMmaConfig& cfg,
              const AttentionPrefillShape& shape, uint64_t out, uint64_t q, uint64_t keys,
              uint64_t values) {
    const AttentionPrefillGeometry g = geometry(cfg, shape);
    LaunchGeometry launch;
    launch.grid = {g.grid_x, g.grid_y, 1};
    launch.block = {g.block_x, 1, 1};
    launch.dynamic_smem_bytes = g.dynamic_smem_bytes;
    launch_kernel(*backend_, function, launch, {}, out, int(shape.out_stride), q,
                  int(shape.q_stride), keys, values, int(shape.tokens), int(shape.first_position),
                  int(shape.heads), int(shape.kv_heads), 1.0f / std::sqrt(float(shape.head_dim)));
  }

  std::vector<std::shared_ptr<const LoadedModule>> modules_;
};

TEST_F(AttentionPrefillMmaGpu, EveryConfigMatchesReference) {
  const auto started = std::chrono::steady_clock::now();
  const std::map<std::string, Function> functions = load_all();
  ASSERT_EQ(functions.size(), attention_prefill_mma_configs().size());
  std::mt19937 rng(611);
  int64_t launches = 0, failures = 0;
  double worst = 0, worst_row = 0;
  for (int D : {64, 128}) {
    for (const Heads heads : {Heads{8, 2, D}, Heads{8, 8, D}}) {
      for (int T : {1, 7, 64, 100, 513}) {
        for (int first : {0, 37, 1000}) {
          const int H = heads.H, Hkv = heads.Hkv;
          const int length = first + T;
          const Cache cache = random_cache(heads, length, length + 70, rng);
          // q as a view of a fused qkv row for odd T; out rows 8 halves wider than H * D at p0 37.
          const int width = H * D;
          const int q_stride = T % 2 ? (H + 2 * Hkv) * D : width;
          const int out_stride = first == 37 ? width + 8 : width;
          const std::vector<uint16_t> q = test::random_halves(size_t(T) * q_stride, 2.0f, rng);
          std::vector<float> q_packed(size_t(T) * width);
          for (int t = 0; t < T; ++t)
            for (int i = 0; i < width; ++i)
              q_packed[size_t(t) * width + i] = half_to_float(q[size_t(t) * q_stride + i]);
          std::vector<float> want(q_packed.size());
          ref::attention(q_packed.data(), cache.keys_float.data(), cache.values_float.data(),
                         want.data(), T, first, H, Hkv, D);
          const DeviceBuffer q_device = upload(q), keys = upload(cache.keys),
                             values = upload(cache.values);
          const AttentionPrefillShape shape{T, first, H, Hkv, D, q_stride, out_stride};
          const std::vector<AttentionPrefillMmaConfig> configs =
              attention_prefill_mma_space(device(), shape);
          ASSERT_FALSE(configs.empty()) << "no config of D " << D << " legal on " << device().name;
          const size_t out_count = size_t(T + 1) * out_stride;  // one row past the end
          for (const AttentionPrefillMmaConfig& cfg : configs) {
            const std::string label = to_string(cfg) + " H" + std::to_string(H) + "/" +
                                      std::to_string(Hkv) + " T" + std::to_string(T) + " p0 " +
                                      std::to_string(first);
            DeviceBuffer out = backend_->allocate(out_count * 2);
            backend_->memset(out.raw(), 0xff, out_count * 2, {});
            launch(functions.at(name_expression(cfg)), cfg, shape, out.raw(), q_device.raw(),
                   keys.raw(), values.raw());
            const std::vector<uint16_t> got = download_halves(out, out_count);
            ++launches;
            int stray = 0;
            for (size_t i = 0; i < out_count; ++i)
              stray += (i / out_stride >= size_t(T) || i % out_stride >= size_t(width)) &&
                       got[i] != kHalfNaN;
            EXPECT_EQ(stray, 0) << label << ": wrote outside the T x H x D output";
            const double error = relative_error(got, out_stride, want, width, 0, T);
            double row_error = 0;  // the worst token's; NaN counts as infinite
            int bad_row = -1;
            for (int t = 0; t < T; ++t) {
              const double e = relative_error(got, out_stride, want, width, t, 1);
              if (!(e <= row_error)) {
                row_error = std::isnan(e) ? INFINITY : e;
                bad_row = t;
              }
            }
            worst = std::max(worst, std::isnan(error) ? INFINITY : error);
            worst_row = std::max(worst_row, row_error);
            if (!(error <= kTolerance) || !(row_error <= kTolerance)) {
              ++failures;
              ADD_FAILURE() << label << ": relative error " << error << ", worst row " << bad_row
                            << " " << row_error << " > " << kTolerance;
            }
          }
        }
      }
    }
  }
  std::printf(
      "attention_prefill_mma on %s: %zu configs, %lld launches, %lld failures, worst relative "
      "error %.2e (worst row %.2e), %.1f s\n",
      device().name.c_str(), functions.size(), static_cast<long long>(launches),
      static_cast<long long>(failures), worst, worst_row,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

// Not a bound: each configuration on the Llama-7B shape (H 32, D 128), a 512-token chunk at p0 0
// and at p0 1408 (the last chunk of 1920 tokens), for the lead's prefill budget.
TEST_F(AttentionPrefillMmaGpu, Timings) {
  const std::map<std::string, Function> functions = load_all();
  std::mt19937 rng(612);
  const Heads heads{32, 32, 128};
  const int T = 512, max_first = 1408;
  const Cache cache = random_cache(heads, max_first + T, max_first + T, rng);
  const DeviceBuffer keys = upload(cache.keys), values = upload(cache.values);
  const DeviceBuffer q = upload(test::random_halves(size_t(T) * 32 * 128, 2.0f, rng));
  const DeviceBuffer out = backend_->allocate(size_t(T) * 32 * 128 * 2);
  for (int first : {0, max_first}) {
    const AttentionPrefillShape shape{T, first, 32, 32, 128, 32 * 128, 32 * 128};
    const double flops = 4.0 * 32 * 128 * T * (first + (T + 1) / 2.0);  // QK^T and PV, causal
    for (const AttentionPrefillMmaConfig& cfg : attention_prefill_mma_space(device(), shape)) {
      const Function& function = functions.at(name_expression(cfg));
      auto run = [&] {
        launch(function, cfg, shape, out.raw(), q.raw(), keys.raw(), values.raw());
      };
      for (int i = 0; i < 3; ++i) run();
      Event start = backend_->create_event(), end = backend_->create_event();
      backend_->record(start, {});
      for (int i = 0; i < 20; ++i) run();
      backend_->record(end, {});
      const double us = backend_->elapsed_ms(start, end) * 1000.0 / 20;
      std::printf("attention_prefill_mma %s T %d p0 %d: %.1f us (%.1f TFLOP/s)\n",
                  to_string(cfg).c_str(), T, first, us, flops / us * 1e-6);
      EXPECT_GT(us, 0.0);
    }
  }
}

}  // namespace
}  // namespace q4jit
