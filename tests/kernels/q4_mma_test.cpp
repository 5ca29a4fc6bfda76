// The q4_mma family (tensor-core q4 GEMM): its space and descriptor (no GPU), the whole space
// compiling through NVRTC for sm_80 and sm_90 (no GPU; skipped without NVRTC), and on a GPU every
// configuration against the CPU reference (dequantize_gptq + ref::matmul) on fresh random inputs,
// output poisoned (NaN) before each launch.
//
// GPU coverage, one sweep (q4jit_kernel_tests --gtest_filter='Q4Mma*'): fixture shapes (512->512,
// 512->256, 512->1408, 1408->512) and Llama-7B shapes (4096->12288, 4096->4096, 4096->22016,
// 11008->4096, 4096->11008) x group size 32, 128, none x act-order off, on. On every one the whole
// space at M = 16 and 64; at M = 1, 2, 3, 4, 8 (partial tiles) the whole space on the fixture
// shapes and one config per kernel (sk2) on the 7B shapes. The split-K workspace is zeroed once
// per layer: a launch that left it dirty fails the configs after it.
// Q4MmaGpu.Benchmark (Q4JIT_KERNEL_BENCH=1) times the space on the 7B shapes at M = 16 and 64 and
// the prefill (M = 1920) paths.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

#include "kernel_sources/q4_mma.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/gemm_runner.hpp"
#include "tuner/measure.hpp"
#include "tuner/q4_mma_runner.hpp"

namespace q4jit {
namespace {

DeviceInfo ampere_like() {
  DeviceInfo device;
  device.cc_major = 9;
  device.max_threads_per_block = 1024;
  device.smem_per_block_optin = 227 * 1024;
  return device;
}

TEST(Q4MmaSpace, DefaultFirstNamesUniqueAndModestSize) {
  const std::vector<Q4MmaConfig> configs = q4_mma_configs();
  ASSERT_FALSE(configs.empty());
  EXPECT_EQ(to_string(configs.front()), "tm16.tn128.tk64.wn4.wk1.st3.sk2");
  std::set<std::string> names, expressions;
  for (const Q4MmaConfig& cfg : configs) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << to_string(cfg);
    EXPECT_TRUE(instantiable(cfg)) << to_string(cfg);
    expressions.insert(name_expression(cfg));
  }
  EXPECT_LE(expressions.size(), 64u) << "distinct kernels: CI compiles them all twice";
  EXPECT_EQ(q4_mma_family().all_variants.size(), expressions.size());
  EXPECT_EQ(name_expression(Q4MmaConfig{}), "q4_mma_kernel<16, 128, 64, 4, 1, 3>");
}

TEST(Q4MmaSpace, LegalityFollowsShapeAndDevice) {
  const DeviceInfo device = ampere_like();
  const Q4MmaShape shape{16, 4096, 4096, 128, false};
  EXPECT_TRUE(legal(Q4MmaConfig{}, device, shape));
  DeviceInfo turing = device;
  turing.cc_major = 7;
  turing.cc_minor = 5;
  EXPECT_FALSE(legal(Q4MmaConfig{}, turing, shape)) << "mma.sync m16n8k16 + cp.async need sm_80";
  EXPECT_FALSE(legal(Q4MmaConfig{}, device, {16, 4096, 4100, 128, false})) << "N % 8";
  EXPECT_FALSE(legal(Q4MmaConfig{}, device, {16, 4112, 4096, 16, false})) << "K, group % 32";
  EXPECT_TRUE(legal(Q4MmaConfig{}, device, {1, 1408, 520, 1408, true})) << "no-group, odd N/8";
  Q4MmaConfig many_splits;
  many_splits.split_k = 8;
  EXPECT_FALSE(legal(many_splits, device, {16, 256, 512, 128, false})) << "4 K-tiles, 8 splits";
  Q4MmaConfig too_wide{64, 128, 64, 2, 2, 3, 1};
  EXPECT_FALSE(instantiable(too_wide)) << "4 x 8 mma tiles per warp";
  DeviceInfo small_smem = device;
  small_smem.smem_per_block_optin = 48 * 1024;
  EXPECT_FALSE(legal({64, 64, 128, 2, 4, 4, 1}, small_smem, shape)) << "4 stages of 64 x 128";
}

TEST(Q4MmaSpace, GeometryAndWorkspace) {
  const Q4MmaShape shape{20, 4096, 4104, 128, false};
  const Q4MmaConfig cfg{16, 128, 64, 4, 1, 3, 4};
  const Q4MmaGeometry grid = geometry(cfg, shape);
  EXPECT_EQ(grid.grid_x, 33u);  // partial last column tile
  EXPECT_EQ(grid.grid_y, 2u);   // partial last row tile
  EXPECT_EQ(grid.grid_z, 4u);
  EXPECT_EQ(grid.block_x, 128u);
  EXPECT_GE(grid.dynamic_smem_bytes, 3 * (16 * 64 * 2 + 8 * 128 * 4));
  const Q4MmaWorkspace layout = workspace(cfg, shape);
  EXPECT_GE(layout.counters_offset, 20 * 4104 * 4);
  EXPECT_GE(layout.bytes - layout.counters_offset, 33 * 2 * 4);
  EXPECT_EQ(workspace(Q4MmaConfig{16, 128, 64, 4, 1, 3, 1}, shape).bytes, 0);
}

// CI's proof that the whole space compiles for sm_80 and sm_90 (no GPU needed).
TEST(Q4MmaCompile, WholeSpaceForSm80AndSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  std::vector<CompileRequest> requests;
  for (int sm : {80, 90}) {
    for (CompileRequest& request : q4_mma_requests(q4_mma_configs(), {sm, false}, 6)) {
      requests.push_back(std::move(request));
    }
  }
  const int jobs = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const auto started = std::chrono::steady_clock::now();
  const std::vector<Result<CompiledKernel>> results = service.get_all(requests, jobs);
  int failed = 0;
  for (const Result<CompiledKernel>& result : results) {
    if (!result) {
      ++failed;
      ADD_FAILURE() << result.error().describe();
    }
  }
  std::printf(
      "q4_mma: %zu programs (%zu kernels per arch) compiled for sm_80, sm_90 in %.1f s on "
      "%d jobs, %d failed\n",
      requests.size(), q4_mma_family().all_variants.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), jobs,
      failed);
}

// --- GPU

struct Layer {
  int K, N, group_size;  // group_size == K: no-group
  bool act_order;
  bool fixture;
};

std::string layer_name(const Layer& c) {
  return std::to_string(c.K) + "->" + std::to_string(c.N) + " g" +
         (c.group_size == c.K ? std::string("none") : std::to_string(c.group_size)) +
         (c.act_order ? " act" : "");
}

std::vector<Layer> sweep_layers() {
  const int fixture[][2] = {{512, 512}, {512, 256}, {512, 1408}, {1408, 512}};
  const int llama[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}, {4096, 11008}};
  std::vector<Layer> layers;
  auto add = [&](int K, int N, bool is_fixture) {
    for (int group : {32, 128, K}) {
      for (bool act : {false, true}) layers.push_back({K, N, group, act, is_fixture});
    }
  };
  for (const auto& [K, N] : fixture) add(K, N, true);
  for (const auto& [K, N] : llama) add(K, N, false);
  return layers;
}

class Q4MmaGpu : public test::GpuTest {
 protected:
  std::vector<Q4MmaKernel> load_all(const std::vector<Q4MmaConfig>& configs) {
    KernelService service(*compiler_, nullptr);
    std::vector<Q4MmaKernel> kernels;
    for (Result<Q4MmaKernel>& kernel : load_q4_mma(*backend_, service, configs, jobs())) {
      if (!kernel) {
        ADD_FAILURE() << kernel.error().describe();
      } else {
        kernels.push_back(kernel.value());
      }
    }
    return kernels;
  }
};

struct Tally {
  int64_t launches = 0, failures = 0;
  double worst = 0;
};

TEST_F(Q4MmaGpu, EveryConfigMatchesReference) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<Q4MmaKernel> kernels = load_all(q4_mma_configs());
  const double compile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const DeviceInfo& device = backend_->current_device();
  std::mt19937 rng(20240612);
  Tally tally;
  constexpr int kMaxM = 64;
  for (const Layer& layer : sweep_layers()) {
    const GptqLinear linear =
        test::random_gptq(layer.K, layer.N, layer.group_size, layer.act_order, rng);
    const std::vector<uint16_t> x = test::random_halves(size_t(kMaxM) * layer.K, 1.0f, rng);
    std::vector<float> want(size_t(kMaxM) * layer.N);
    ref::matmul(test::to_floats(x).data(), dequantize_gptq(linear).data(), want.data(), kMaxM,
                layer.K, layer.N);
    DeviceBuffer qweight = upload(linear.qweight), scales = upload(linear.scales),
                 qzeros = upload(linear.qzeros), x_map = upload(linear.x_map), x_device = upload(x);
    DeviceBuffer out = backend_->allocate(want.size() * 2);
    int64_t scratch_bytes = 16;
    for (const Q4MmaKernel& kernel : kernels) {
      scratch_bytes = std::max(
          scratch_bytes,
          workspace(kernel.config, {kMaxM, layer.K, layer.N, layer.group_size, false}).bytes);
    }
    DeviceBuffer scratch = backend_->allocate(static_cast<size_t>(scratch_bytes));
    backend_->memset(scratch.raw(), 0, static_cast<size_t>(scratch_bytes), {});
    const Q4MatmulOperands operands{out.raw(),    x_device.raw(), x_map.raw(),  qweight.raw(),
                                    scales.raw(), qzeros.raw(),   scratch.raw()};
    for (int M : {1, 2, 3, 4, 8, 16, 64}) {
      const bool whole_space = layer.fixture || M >= 16;
      const Q4MmaShape shape{M, layer.K, layer.N, layer.group_size, layer.act_order};
      const size_t count = size_t(M) * layer.N;
      for (const Q4MmaKernel& kernel : kernels) {
        if (!legal(kernel.config, device, shape)) continue;
        if (!whole_space && kernel.config.split_k != 2) continue;
        backend_->memset(out.raw(), 0xff, count * 2, {});  // fp16 NaN everywhere
        launch_q4_mma(*backend_, kernel, shape, operands, {});
        const std::vector<uint16_t> got = download_halves(out, count);
        const double error = test::relative_error(got, want, count);
        ++tally.launches;
        tally.worst = std::max(tally.worst, std::isnan(error) ? INFINITY : error);
        if (!(error <= 2e-3)) {
          ++tally.failures;
          ADD_FAILURE() << to_string(kernel.config) << " on " << layer_name(layer) << " M=" << M
                        << ": relative error " << error << " > 2e-3;"
                        << test::first_mismatches(got, want, count, layer.N);
        }
      }
    }
  }
  std::printf(
      "q4_mma GPU sweep on %s: %zu layers x 7 M, %zu configs (compiled and loaded in "
      "%.1f s), %lld launches, %lld failures, worst relative error %.2e, %.1f s\n",
      device.name.c_str(), sweep_layers().size(), kernels.size(), compile_seconds,
      static_cast<long long>(tally.launches), static_cast<long long>(tally.failures), tally.worst,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

// --- timing (Q4JIT_KERNEL_BENCH=1): per ../shared/docs/BENCHMARK.md through tuner/measure.

struct Ranked {
  std::string config;
  Timing timing;
};

void print_ranking(const std::string& label, std::vector<Ranked> ranked, double bytes) {
  std::sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) {
    return a.timing.median_us < b.timing.median_us;
  });
  ASSERT_FALSE(ranked.empty()) << label;
  std::printf("%s: %zu configs; best", label.c_str(), ranked.size());
  for (size_t i = 0; i < std::min<size_t>(3, ranked.size()); ++i) {
    std::printf("%s %s %.2f us", i ? "," : "", ranked[i].config.c_str(),
                ranked[i].timing.median_us);
    if (bytes > 0) std::printf(" (%.2f TB/s)", bytes / (ranked[i].timing.median_us * 1e-6) / 1e12);
  }
  std::printf("\n");
  EXPECT_GT(ranked.front().timing.median_us, 0.0);
}

TEST_F(Q4MmaGpu, Benchmark) {
  if (std::getenv("Q4JIT_KERNEL_BENCH") == nullptr) {
    GTEST_SKIP() << "timing runs only with Q4JIT_KERNEL_BENCH=1";
  }
  const std::vector<Q4MmaKernel> kernels = load_all(q4_mma_configs());
  const DeviceInfo& device = backend_->current_device();
  std::mt19937 rng(7);
  const int shapes[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
  for (const auto& [K, N] : shapes) {
    const GptqLinear linear = test::random_gptq(K, N, 128, false, rng);
    const double bytes =
        linear.qweight.size() * 4.0 + linear.scales.size() * 2.0 + linear.qzeros.size() * 4.0;
    const int copies = copies_beyond_cache(device, static_cast<int64_t>(bytes));
    std::vector<DeviceBuffer> qweight, scales, qzeros;
    for (int c = 0; c < copies; ++c) {
      qweight.push_back(upload(linear.qweight));
      scales.push_back(upload(linear.scales));
      qzeros.push_back(upload(linear.qzeros));
    }
    for (int M : {16, 64}) {
      const Q4MmaShape shape{M, K, N, 128, false};
      DeviceBuffer x = upload(test::random_halves(size_t(M) * K, 1.0f, rng));
      DeviceBuffer out = backend_->allocate(size_t(M) * N * 2);
      DeviceBuffer scratch = backend_->allocate(size_t(M) * N * 4 + (1 << 20));
      backend_->memset(scratch.raw(), 0, size_t(M) * N * 4 + (1 << 20), {});
      std::vector<Ranked> ranked;
      for (const Q4MmaKernel& kernel : kernels) {
        if (!legal(kernel.config, device, shape)) continue;
        const Timing timing = time_calls(*backend_, copies, [&](int c, StreamView stream) {
          const Q4MatmulOperands operands{out.raw(),        x.raw(),         0,
                                          qweight[c].raw(), scales[c].raw(), qzeros[c].raw(),
                                          scratch.raw()};
          launch_q4_mma(*backend_, kernel, shape, operands, stream);
        });
        ranked.push_back({to_string(kernel.config), timing});
      }
      print_ranking(
          "q4_mma " + std::to_string(K) + "->" + std::to_string(N) + " g128 M=" + std::to_string(M),
          ranked, bytes);
    }
  }
}

// Prefill: 4096->12288 g128 at M = 1920, the fused kernel against dequantize + gemm_f16.
TEST_F(Q4MmaGpu, BenchmarkPrefill) {
  if (std::getenv("Q4JIT_KERNEL_BENCH") == nullptr) {
    GTEST_SKIP() << "timing runs only with Q4JIT_KERNEL_BENCH=1";
  }
  constexpr int M = 1920, K = 4096, N = 12288;
  const DeviceInfo& device = backend_->current_device();
  std::mt19937 rng(8);
  const GptqLinear linear = test::random_gptq(K, N, 128, false, rng);
  DeviceBuffer qweight = upload(linear.qweight), scales = upload(linear.scales),
               qzeros = upload(linear.qzeros);
  DeviceBuffer x = upload(test::random_halves(size_t(M) * K, 1.0f, rng));
  DeviceBuffer out = backend_->allocate(size_t(M) * N * 2);
  DeviceBuffer weight = backend_->allocate(size_t(N) * K * 2);
  MeasureOptions options;
  options.warmup_launches = 1;
  options.timed_launches = 5;
  options.min_calls_per_graph = 6;
  const double flops = 2.0 * M * K * N;
  auto tflops = [&](const Timing& t) { return flops / (t.median_us * 1e-6) / 1e12; };

  std::vector<Q4MmaConfig> fused;
  for (const Q4MmaConfig& cfg : q4_mma_configs()) {
    if (cfg.tile_m == 64 && cfg.split_k == 1) fused.push_back(cfg);
  }
  std::vector<Ranked> ranked;
  const Q4MmaShape shape{M, K, N, 128, false};
  for (const Q4MmaKernel& kernel : load_all(fused)) {
    if (!legal(kernel.config, device, shape)) continue;
    const Q4MatmulOperands operands{out.raw(),    x.raw(),      0, qweight.raw(),
                                    scales.raw(), qzeros.raw(), 0};
    const Timing timing = time_calls(
        *backend_, 1,
        [&](int, StreamView stream) { launch_q4_mma(*backend_, kernel, shape, operands, stream); },
        options);
    ranked.push_back({to_string(kernel.config), timing});
    std::printf("  q4_mma %s: %.1f us, %.0f TFLOP/s\n", ranked.back().config.c_str(),
                timing.median_us, tflops(timing));
  }
  print_ranking("prefill q4_mma 4096->12288 g128 M=1920", ranked, 0);

  KernelService service(*compiler_, nullptr);
  const DequantizeKernel dequantize =
      load_dequantize_q4(*backend_, service, {DequantizeConfig{}}, 1).front().value();
  const DequantizeShape dequantize_shape{K, N, 128};
  const DequantizeOperands dequantize_operands{weight.raw(), qweight.raw(), scales.raw(),
                                               qzeros.raw(), 0};
  const Timing dequantize_time = time_calls(
      *backend_, 1,
      [&](int, StreamView stream) {
        launch_dequantize_q4(*backend_, dequantize, dequantize_shape, dequantize_operands, stream);
      },
      options);
  std::printf("prefill dequantize_q4 4096x12288: %.1f us (%.2f TB/s written + read)\n",
              dequantize_time.median_us,
              (N * double(K) * 2 + linear.qweight.size() * 4.0) /
                  (dequantize_time.median_us * 1e-6) / 1e12);
  std::vector<GemmConfig> gemm_configs;
  for (const GemmConfig& cfg : gemm_f16_configs()) {
    if (cfg.tile_m >= 64 && cfg.split_k == 1) gemm_configs.push_back(cfg);
  }
  ranked.clear();
  const GemmShape gemm_shape{M, K, N};
  for (Result<GemmKernel>& kernel : load_gemm_f16(*backend_, service, gemm_configs, jobs())) {
    ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
    if (!legal(kernel.value().config, device, gemm_shape)) continue;
    const GemmOperands operands{out.raw(), x.raw(), weight.raw(), 0};
    const Timing timing = time_calls(
        *backend_, 1,
        [&](int, StreamView stream) {
          launch_gemm_f16(*backend_, kernel.value(), gemm_shape, operands, stream);
        },
        options);
    ranked.push_back({to_string(kernel.value().config), timing});
    std::printf("  gemm_f16 %s: %.1f us, %.0f TFLOP/s\n", ranked.back().config.c_str(),
                timing.median_us, tflops(timing));
  }
  print_ranking("prefill gemm_f16 4096->12288 M=1920 (plus dequantize above)", ranked, 0);
}

}  // namespace
}  // namespace q4jit
