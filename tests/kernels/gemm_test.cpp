// The dequantize + GEMM path: gemm_f16 (x W^T, W fp16 [N, K]) and dequantize_q4 (GPTQ -> that W).
// Without a GPU: the spaces and descriptors, and the whole spaces compiling through NVRTC for
// sm_80 and sm_90 (skipped without NVRTC). On a GPU, with fresh random inputs and outputs
// poisoned (NaN) first:
// - gemm_f16, every configuration against ref::matmul on the fixture shapes (512->512, 512->256,
//   512->1408, 1408->512, lm_head 512->4096) at M = 1, 2, 3, 4, 8, 16, 64, 200, and on the
//   Llama-7B shapes (4096->12288, 4096->4096, 4096->22016, 11008->4096, 4096->11008) at M = 16,
//   64 (whole space) and M = 1, 3, 8 (one config per kernel, sk1);
// - dequantize_q4, every configuration bit-exact against dequantize_gptq rounded to fp16, for
//   group sizes 32, 128, none and act-order off and on;
// - dequantize_q4 then gemm_f16 against dequantize_gptq + ref::matmul.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <thread>

#include "kernel_sources/dequantize_q4.hpp"
#include "kernel_sources/gemm_f16.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/gemm_runner.hpp"

namespace q4jit {
namespace {

DeviceInfo sm90_like() {
  DeviceInfo device;
  device.cc_major = 9;
  device.max_threads_per_block = 1024;
  device.smem_per_block_optin = 227 * 1024;
  return device;
}

TEST(GemmSpace, DefaultFirstNamesUniqueAndModestSize) {
  const std::vector<GemmConfig> configs = gemm_f16_configs();
  ASSERT_FALSE(configs.empty());
  EXPECT_EQ(to_string(configs.front()), "tm64.tn128.tk32.wm2.wn2.st3.sk1");
  std::set<std::string> names, expressions;
  for (const GemmConfig& cfg : configs) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << to_string(cfg);
    EXPECT_TRUE(instantiable(cfg)) << to_string(cfg);
    expressions.insert(name_expression(cfg));
  }
  EXPECT_LE(expressions.size(), 40u);
  EXPECT_EQ(gemm_f16_family().all_variants.size(), expressions.size());
  EXPECT_EQ(dequantize_q4_family().all_variants.size(), dequantize_q4_configs().size());
}

TEST(GemmSpace, WgmmaOnSm90OnlyAndItsDefaultFirstThere) {
  const DeviceInfo hopper = sm90_like();
  DeviceInfo ampere = hopper;
  ampere.cc_major = 8;
  const GemmShape shape{512, 4096, 12288};
  const std::vector<GemmConfig> on_hopper = space(hopper, shape);
  ASSERT_FALSE(on_hopper.empty());
  EXPECT_EQ(to_string(on_hopper.front()), "wg.tm128.tn128.st4");
  EXPECT_EQ(name_expression(on_hopper.front()), "gemm_f16_wgmma_kernel<128, 128, 4>");
  for (const GemmConfig& cfg : space(ampere, shape)) EXPECT_EQ(cfg.wgmma, 0) << to_string(cfg);
  EXPECT_EQ(to_string(space(ampere, shape).front()), to_string(GemmConfig{}));

  GemmConfig wide = on_hopper.front();
  wide.tile_n = 256;
  wide.stages = 6;  // 6 x 384 rows x 128 bytes: over the 227 KB opt-in limit
  EXPECT_TRUE(instantiable(wide));
  EXPECT_FALSE(legal(wide, hopper, shape));
  GemmConfig split = on_hopper.front();
  split.split_k = 2;
  EXPECT_FALSE(legal(split, hopper, shape)) << "no split-K";
  GemmConfig odd = on_hopper.front();
  odd.warps_m = 4;
  EXPECT_FALSE(instantiable(odd)) << "wm must be tm / 16";

  // M tiles along x, so the blocks of one weight tile are resident together.
  const GemmGeometry grid = geometry(on_hopper.front(), {300, 4096, 1000});
  EXPECT_EQ(grid.grid_x, 3u);
  EXPECT_EQ(grid.grid_y, 8u);
  EXPECT_EQ(grid.block_x, 256u);
  EXPECT_EQ(grid.dynamic_smem_bytes, 4 * 256 * 128 + 1024);
}

TEST(GemmSpace, LegalityAndGeometry) {
  const DeviceInfo device = sm90_like();
  EXPECT_TRUE(legal(GemmConfig{}, device, {1, 4096, 32000}));
  EXPECT_FALSE(legal(GemmConfig{}, device, {1, 4100, 4096})) << "K % 8";
  EXPECT_FALSE(legal(GemmConfig{}, device, {1, 4096, 4095})) << "N odd";
  DeviceInfo turing = device;
  turing.cc_major = 7;
  EXPECT_FALSE(legal(GemmConfig{}, turing, {16, 4096, 4096}));
  EXPECT_FALSE(instantiable(GemmConfig{128, 256, 32, 1, 2, 3, 1})) << "8 x 16 mma tiles a warp";
  EXPECT_FALSE(legal(GemmConfig{64, 128, 32, 2, 2, 3, 4}, device, {16, 64, 64})) << "2 K-tiles";
  const GemmGeometry grid = geometry(GemmConfig{}, {100, 4096, 1000});
  EXPECT_EQ(grid.grid_x, 8u);
  EXPECT_EQ(grid.grid_y, 2u);
  EXPECT_EQ(grid.block_x, 128u);
  EXPECT_EQ(workspace(GemmConfig{}, {100, 4096, 1000}).bytes, 0);
  EXPECT_GE(workspace(GemmConfig{64, 128, 32, 2, 2, 3, 2}, {100, 4096, 1000}).bytes,
            100 * 1000 * 4 + 16 * 4);
  const DequantizeGeometry dequantize = geometry(DequantizeConfig{}, {4096, 1000, 128});
  EXPECT_EQ(dequantize.grid_x, 16u);
  EXPECT_EQ(dequantize.grid_y, 64u);
  EXPECT_EQ(sorted_row_of({2, 0, 1}), (std::vector<int32_t>{1, 2, 0}));
}

// The wgmma kernels compile for sm_90a in programs of their own; for another target they are
// plain sm_XY programs (a trapping body: legal() never runs them there).
TEST(GemmCompile, WgmmaVariantsGetTheArchSpecificTarget) {
  const GemmConfig mma;
  GemmConfig wgmma;
  wgmma.tile_m = 128, wgmma.tile_n = 128, wgmma.tile_k = 64, wgmma.warps_m = 8;
  wgmma.warps_n = 1, wgmma.stages = 4, wgmma.wgmma = 1;
  const std::vector<CompileRequest> hopper = gemm_f16_requests({mma, wgmma}, {90, false}, 6);
  ASSERT_EQ(hopper.size(), 2u);
  EXPECT_EQ(hopper[0].target.label(), "sm_90");
  EXPECT_EQ(hopper[1].target.label(), "sm_90a");
  EXPECT_EQ(hopper[1].target.arch_option(), "--gpu-architecture=sm_90a");
  EXPECT_EQ(hopper[1].name_expressions, std::vector<std::string>{name_expression(wgmma)});
  const std::vector<CompileRequest> ampere = gemm_f16_requests({mma, wgmma}, {80, false}, 6);
  ASSERT_EQ(ampere.size(), 1u);
  EXPECT_EQ(ampere[0].target.label(), "sm_80");
  CompileTarget ptx{90, true};
  EXPECT_FALSE(target_for_expression(gemm_f16_family(), name_expression(wgmma), ptx).arch_specific)
      << "PTX is for a newer device: no arch-specific code";

  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const Result<CompiledKernel> compiled = service.get(hopper[1]);
  ASSERT_TRUE(compiled.ok()) << compiled.error().describe();
  EXPECT_EQ(compiled.value().target.label(), "sm_90a");
  EXPECT_FALSE(compiled.value().binary.empty());
}

TEST(GemmCompile, WholeSpacesForSm80AndSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  std::vector<CompileRequest> requests;
  for (int sm : {80, 90}) {
    for (CompileRequest& request : gemm_f16_requests(gemm_f16_configs(), {sm, false}, 6)) {
      requests.push_back(std::move(request));
    }
    const KernelFamily dequantize = dequantize_q4_family();
    std::vector<std::string> expressions;
    for (const KernelVariant& variant : dequantize.all_variants) {
      expressions.push_back(variant.name_expression);
    }
    for (CompileRequest& request : batched_requests(dequantize, expressions, {sm, false}, 8)) {
      requests.push_back(std::move(request));
    }
  }
  const int jobs = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const auto started = std::chrono::steady_clock::now();
  int failed = 0;
  for (const Result<CompiledKernel>& result : service.get_all(requests, jobs)) {
    if (!result) {
      ++failed;
      ADD_FAILURE() << result.error().describe();
    }
  }
  std::printf(
      "gemm_f16 + dequantize_q4: %zu programs compiled for sm_80, sm_90 in %.1f s on %d "
      "jobs, %d failed\n",
      requests.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), jobs,
      failed);
}

// --- GPU

class GemmGpu : public test::GpuTest {
 protected:
  std::vector<GemmKernel> load_all() {
    KernelService service(*compiler_, nullptr);
    std::vector<GemmKernel> kernels;
    for (Result<GemmKernel>& kernel :
         load_gemm_f16(*backend_, service, gemm_f16_configs(), jobs())) {
      if (!kernel) {
        ADD_FAILURE() << kernel.error().describe();
      } else {
        kernels.push_back(kernel.value());
      }
    }
    return kernels;
  }
  std::vector<DequantizeKernel> load_dequantize() {
    KernelService service(*compiler_, nullptr);
    std::vector<DequantizeKernel> kernels;
    for (Result<DequantizeKernel>& kernel :
         load_dequantize_q4(*backend_, service, dequantize_q4_configs(), jobs())) {
      if (!kernel) {
        ADD_FAILURE() << kernel.error().describe();
      } else {
        kernels.push_back(kernel.value());
      }
    }
    return kernels;
  }
};

struct GemmLayer {
  int K, N;
  bool fixture;
};

TEST_F(GemmGpu, EveryConfigMatchesReference) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<GemmKernel> kernels = load_all();
  const DeviceInfo& device = backend_->current_device();
  // 520 -> 264: K and N not multiples of any tile.
  const GemmLayer layers[] = {{520, 264, true},     {512, 512, true},    {512, 256, true},
                              {512, 1408, true},    {1408, 512, true},   {512, 4096, true},
                              {4096, 12288, false}, {4096, 4096, false}, {4096, 22016, false},
                              {11008, 4096, false}, {4096, 11008, false}};
  std::mt19937 rng(99);
  int64_t launches = 0, failures = 0;
  double worst = 0;
  for (const GemmLayer& layer : layers) {
    const int max_m = layer.fixture ? 200 : 64;
    const std::vector<uint16_t> weight =
        test::random_halves(size_t(layer.N) * layer.K, 1.7f / std::sqrt(float(layer.K)), rng);
    const std::vector<uint16_t> x = test::random_halves(size_t(max_m) * layer.K, 1.0f, rng);
    std::vector<float> want(size_t(max_m) * layer.N);
    ref::matmul(test::to_floats(x).data(), test::to_floats(weight).data(), want.data(), max_m,
                layer.K, layer.N);
    DeviceBuffer weight_device = upload(weight), x_device = upload(x);
    DeviceBuffer out = backend_->allocate(want.size() * 2);
    const int64_t scratch_bytes = size_t(max_m) * layer.N * 4 + (1 << 20);
    DeviceBuffer scratch = backend_->allocate(static_cast<size_t>(scratch_bytes));
    backend_->memset(scratch.raw(), 0, static_cast<size_t>(scratch_bytes), {});
    const std::vector<int> rows = layer.fixture ? std::vector<int>{1, 2, 3, 4, 8, 16, 64, 200}
                                                : std::vector<int>{1, 3, 8, 16, 64};
    for (int M : rows) {
      const GemmShape shape{M, layer.K, layer.N};
      const size_t count = size_t(M) * layer.N;
      for (const GemmKernel& kernel : kernels) {
        if (!legal(kernel.config, device, shape)) continue;
        if (!layer.fixture && M < 16 && kernel.config.split_k != 1) continue;
        backend_->memset(out.raw(), 0xff, count * 2, {});
        const GemmOperands operands{out.raw(), x_device.raw(), weight_device.raw(), scratch.raw()};
        launch_gemm_f16(*backend_, kernel, shape, operands, {});
        const std::vector<uint16_t> got = download_halves(out, count);
        const double error = test::relative_error(got, want, count);
        ++launches;
        worst = std::max(worst, std::isnan(error) ? INFINITY : error);
        if (!(error <= 2e-3)) {
          ++failures;
          ADD_FAILURE() << to_string(kernel.config) << " on " << layer.K << "->" << layer.N
                        << " M=" << M << ": relative error " << error << " > 2e-3;"
                        << test::first_mismatches(got, want, count, layer.N);
        }
      }
    }
  }
  std::printf(
      "gemm_f16 GPU sweep on %s: %zu configs, %lld launches, %lld failures, worst "
      "relative error %.2e, %.1f s\n",
      device.name.c_str(), kernels.size(), static_cast<long long>(launches),
      static_cast<long long>(failures), worst,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

TEST_F(GemmGpu, DequantizeIsBitExactAndFeedsTheGemm) {
  const std::vector<DequantizeKernel> dequantize = load_dequantize();
  const std::vector<GemmKernel> gemms = load_all();
  ASSERT_FALSE(gemms.empty());
  const GemmKernel& gemm = gemms.front();  // the default config
  const int shapes[][2] = {{512, 512}, {512, 1408}, {1408, 512}, {4096, 4096}, {11008, 4096}};
  std::mt19937 rng(5);
  int64_t checks = 0;
  for (const auto& [K, N] : shapes) {
    for (int group : {32, 128, K}) {
      for (bool act : {false, true}) {
        const GptqLinear linear = test::random_gptq(K, N, group, act, rng);
        const std::vector<float> reference = dequantize_gptq(linear);  // [N, K], original rows
        std::vector<uint16_t> want(reference.size());
        for (size_t i = 0; i < want.size(); ++i) want[i] = float_to_half(reference[i]);
        DeviceBuffer qweight = upload(linear.qweight), scales = upload(linear.scales),
                     qzeros = upload(linear.qzeros);
        DeviceBuffer sorted_of = upload(act ? sorted_row_of(linear.x_map) : std::vector<int32_t>{});
        DeviceBuffer weight = backend_->allocate(want.size() * 2);
        const DequantizeOperands operands{weight.raw(), qweight.raw(), scales.raw(), qzeros.raw(),
                                          act ? sorted_of.raw() : 0};
        const std::string label = std::to_string(K) + "->" + std::to_string(N) + " g" +
                                  std::to_string(group) + (act ? " act" : "");
        for (const DequantizeKernel& kernel : dequantize) {
          backend_->memset(weight.raw(), 0xff, want.size() * 2, {});
          launch_dequantize_q4(*backend_, kernel, {K, N, group}, operands, {});
          const std::vector<uint16_t> got = download_halves(weight, want.size());
          size_t first_bad = want.size();
          for (size_t i = 0; i < want.size() && first_bad == want.size(); ++i) {
            if (got[i] != want[i]) first_bad = i;
          }
          ++checks;
          EXPECT_EQ(first_bad, want.size())
              << to_string(kernel.config) << " on " << label << ": W[" << first_bad / K << "]["
              << first_bad % K << "] = " << half_to_float(got[first_bad]) << ", want "
              << half_to_float(want[first_bad]);
        }
        // The dequantized W through the default GEMM at M = 16 equals the q4 reference.
        const int M = 16;
        const std::vector<uint16_t> x = test::random_halves(size_t(M) * K, 1.0f, rng);
        std::vector<float> y(size_t(M) * N);
        ref::matmul(test::to_floats(x).data(), reference.data(), y.data(), M, K, N);
        DeviceBuffer x_device = upload(x), out = backend_->allocate(y.size() * 2);
        backend_->memset(out.raw(), 0xff, y.size() * 2, {});
        launch_gemm_f16(*backend_, gemm, {M, K, N}, {out.raw(), x_device.raw(), weight.raw(), 0},
                        {});
        const std::vector<uint16_t> got = download_halves(out, y.size());
        const double error = test::relative_error(got, y, y.size());
        EXPECT_LE(error, 2e-3) << "dequantize + " << to_string(gemm.config) << " on " << label
                               << test::first_mismatches(got, y, y.size(), N);
      }
    }
  }
  std::printf("dequantize_q4: %lld bit-exact checks over %zu configs\n",
              static_cast<long long>(checks), dequantize.size());
}

}  // namespace
}  // namespace q4jit
