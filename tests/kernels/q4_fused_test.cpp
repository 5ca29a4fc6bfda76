// The fused decode kernels of the q4_matmul family (q4_stream_fused_kernel): their names, the
// NVRTC compile of every stream-K configuration's fusions for sm_80 and sm_90 (no GPU), and on a
// GPU each fusion against the CPU reference of the unfused chain (RMSNorm with its fp16
// roundings then the product; SiLU(gate) * up then the product; the product then the two
// residual adds), on fresh random inputs, outputs poisoned, each launch twice (the split-K
// workspace must be left zero).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "common/half.hpp"
#include "kernel_sources/embedded_sources.hpp"
#include "kernel_sources/q4_matmul.hpp"
#include "model/gptq.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/q4_matmul_runner.hpp"

namespace q4jit {
namespace {

std::vector<Q4MatmulConfig> stream_configs() {
  std::vector<Q4MatmulConfig> configs;
  std::set<std::string> seen;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (fusable(cfg) && seen.insert(name_expression(cfg)).second) configs.push_back(cfg);
  }
  return configs;
}

// The fusions the engine launches (norm into a projection, SiLU plus the residual into down),
// and the other combinations on the first config.
std::vector<Q4Fusion> fusions_of(size_t config_index) {
  std::vector<Q4Fusion> fusions = {{Q4FusedInput::norm, false}, {Q4FusedInput::silu, true}};
  if (config_index == 0) {
    for (Q4FusedInput input : {Q4FusedInput::direct, Q4FusedInput::norm, Q4FusedInput::silu}) {
      for (bool residual : {false, true}) {
        if (!(input == Q4FusedInput::norm && !residual) &&
            !(input == Q4FusedInput::silu && residual))
          fusions.push_back({input, residual});
      }
    }
  }
  return fusions;
}

TEST(Q4FusedNames, ExtendThePlainKernelsParameters) {
  Q4MatmulConfig cfg;
  cfg.block_threads = 128;
  cfg.columns_per_thread = 2;
  cfg.load_bits = 64;
  cfg.k_slice = 256;
  cfg.blocks_per_sm = 4;
  cfg.stream_rows = 16;
  EXPECT_EQ(name_expression(cfg), "q4_stream_kernel<128, 2, 64, 1, false, 16, 4>");
  EXPECT_EQ(fused_name_expression(cfg, {Q4FusedInput::silu, true}),
            "q4_stream_fused_kernel<128, 2, 64, 1, false, 16, 4, 2, true>");
  EXPECT_EQ(q4_matmul_fused_variant(cfg, {Q4FusedInput::norm, false}).config,
            to_string(cfg) + ".fused-norm");
  cfg.stream_groups = 4;  // the groups per batch come last in both lists
  EXPECT_EQ(to_string(cfg), "bt128.cpt2.lw64.ks256.mb1.xs.f32.at.p4.sr16.sg4");
  EXPECT_EQ(name_expression(cfg), "q4_stream_kernel<128, 2, 64, 1, false, 16, 4, 4>");
  EXPECT_EQ(fused_name_expression(cfg, {Q4FusedInput::silu, true}),
            "q4_stream_fused_kernel<128, 2, 64, 1, false, 16, 4, 2, true, 4>");
  cfg.stream_groups = 1;
  cfg.stream_rows = 0;
  EXPECT_FALSE(fusable(cfg));
  EXPECT_THROW(fused_name_expression(cfg, {}), Error);
}

// CI's proof that the fused kernels compile (no GPU needed).
TEST(Q4FusedCompile, EveryStreamConfigForSm80AndSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const std::vector<Q4MatmulConfig> configs = stream_configs();
  ASSERT_GE(configs.size(), 4u);
  std::vector<CompileRequest> requests;
  for (int sm : {80, 90}) {
    CompileRequest request;
    request.family = q4_matmul_family().name;
    request.source = embedded_kernel_source(q4_matmul_family().source);
    request.target = {sm, false};
    request.config = "fused-all";
    for (size_t i = 0; i < configs.size(); ++i) {
      for (const Q4Fusion& fusion : fusions_of(i))
        request.name_expressions.push_back(fused_name_expression(configs[i], fusion));
    }
    requests.push_back(request);
  }
  const auto results = service.get_all(requests, 2);
  for (const auto& result : results) EXPECT_TRUE(result.ok()) << result.error().describe();
  std::printf("q4_stream_fused: %zu kernels per arch compiled for sm_80, sm_90\n",
              requests.front().name_expressions.size());
}

// --- GPU

class Q4FusedGpu : public test::GpuTest {};

struct FusedCase {
  int K, N, group_size;
  bool act_order;
  Q4Fusion fusion;
  bool with_delta;  // the norm's input delta / the residual's pending delta
};

// What the unfused kernels compute, on the CPU: the projection's input row in original order.
std::vector<float> reference_input(const FusedCase& c, const std::vector<uint16_t>& x,
                                   const std::vector<uint16_t>& second,
                                   const std::vector<uint16_t>& delta, float eps) {
  std::vector<float> input(size_t(c.K));
  if (c.fusion.input == Q4FusedInput::silu) {
    for (int k = 0; k < c.K; ++k) {
      const float gate = half_to_float(x[k]);
      input[k] =
          half_to_float(float_to_half(gate / (1.0f + std::exp(-gate)) * half_to_float(second[k])));
    }
    return input;
  }
  if (c.fusion.input == Q4FusedInput::direct) return test::to_floats(x);
  std::vector<float> summed(size_t(c.K));
  double squares = 0;
  for (int k = 0; k < c.K; ++k) {
    float value = half_to_float(x[k]);
    if (c.with_delta) value = half_to_float(float_to_half(value + half_to_float(delta[k])));
    summed[k] = value;
    squares += double(value) * value;
  }
  const float inverse_rms = float(1.0 / std::sqrt(squares / c.K + eps));
  for (int k = 0; k < c.K; ++k) {
    const float normalized = half_to_float(float_to_half(summed[k] * inverse_rms));
    input[k] = half_to_float(float_to_half(normalized * half_to_float(second[k])));
  }
  return input;
}

TEST_F(Q4FusedGpu, EveryFusionMatchesTheUnfusedReference) {
  const DeviceInfo& device = backend_->current_device();
  KernelService service(*compiler_, nullptr);
  const CompileTarget target = select_target(device.sm(), compiler_->supported_archs());
  const std::vector<Q4MatmulConfig> configs = stream_configs();
  const Q4Fusion norm{Q4FusedInput::norm, false}, silu{Q4FusedInput::silu, true};
  const std::vector<FusedCase> cases = {
      {512, 1536, 128, true, norm, false},
      {512, 2816, 32, false, norm, true},
      {1408, 512, 128, false, silu, true},
      {1408, 512, 1408, false, silu, false},
      {4096, 12288, 128, true, norm, false},
      {11008, 4096, 128, false, silu, true},
      {4096, 4096, 4096, false, {Q4FusedInput::direct, true}, true},
      {512, 512, 128, true, {Q4FusedInput::direct, false}, false}};
  std::mt19937 rng(20261124);
  const float eps = 1e-5f;
  int launches = 0, failures = 0;
  double worst = 0;
  for (const FusedCase& c : cases) {
    const GptqLinear linear = test::random_gptq(c.K, c.N, c.group_size, c.act_order, rng);
    const std::vector<uint16_t> x = test::random_halves(size_t(c.K), 2.0f, rng);
    const std::vector<uint16_t> second = test::random_halves(size_t(c.K), 1.5f, rng);
    const std::vector<uint16_t> delta = test::random_halves(size_t(c.K), 1.0f, rng);
    const std::vector<uint16_t> residual = test::random_halves(size_t(c.N), 1.0f, rng);
    const std::vector<uint16_t> residual_delta = test::random_halves(size_t(c.N), 1.0f, rng);
    const std::vector<float> input = reference_input(c, x, second, delta, eps);
    std::vector<float> want(size_t(c.N));
    ref::matmul(input.data(), dequantize_gptq(linear).data(), want.data(), 1, c.K, c.N);
    if (c.fusion.residual) {  // half(half(residual + delta) + half(sum))
      for (int n = 0; n < c.N; ++n) {
        float value = half_to_float(residual[n]);
        if (c.with_delta)
          value = half_to_float(float_to_half(value + half_to_float(residual_delta[n])));
        want[n] = half_to_float(float_to_half(value + half_to_float(float_to_half(want[n]))));
      }
    }
    DeviceBuffer qweight = upload(linear.qweight), scales = upload(linear.scales),
                 qzeros = upload(linear.qzeros), x_map = upload(linear.x_map), x_device = upload(x),
                 second_device = upload(second), delta_device = upload(delta);
    DeviceBuffer out = backend_->allocate(size_t(c.N) * 2);
    DeviceBuffer residual_device = backend_->allocate(size_t(c.N) * 2);
    DeviceBuffer residual_delta_device = upload(residual_delta);
    // The residual outputs also write the row in a random sorted order (the engine's copy for
    // the next act-order projection), checked against the residual row bit for bit.
    std::vector<int32_t> sorted_position(size_t(c.N));
    std::iota(sorted_position.begin(), sorted_position.end(), 0);
    std::shuffle(sorted_position.begin(), sorted_position.end(), rng);
    DeviceBuffer sorted_position_device = upload(sorted_position);
    DeviceBuffer sorted_copy = backend_->allocate(size_t(c.N) * 2);
    const Q4MatmulShape shape{1, c.K, c.N, c.group_size, c.act_order};
    for (const Q4MatmulConfig& cfg : configs) {
      if (!legal(cfg, device, shape)) continue;
      const KernelVariant variant = q4_matmul_fused_variant(cfg, c.fusion);
      CompileRequest request;
      request.family = q4_matmul_family().name;
      request.source = embedded_kernel_source(q4_matmul_family().source);
      request.target = target;
      request.config = variant.config;
      request.name_expressions = {variant.name_expression};
      const Result<CompiledKernel> compiled = service.get(request);
      ASSERT_TRUE(compiled.ok()) << compiled.error().describe();
      const LoadedModule module = backend_->load_module(compiled.value());
      const Function function = module.function(variant.name_expression);
      const Q4MatmulWorkspace layout = workspace(cfg, shape);
      DeviceBuffer scratch = backend_->allocate(size_t(std::max<int64_t>(layout.bytes, 16)));
      backend_->memset(scratch.raw(), 0, size_t(std::max<int64_t>(layout.bytes, 16)), {});
      const Q4MatmulOperands operands{out.raw(),    x_device.raw(), x_map.raw(),  qweight.raw(),
                                      scales.raw(), qzeros.raw(),   scratch.raw()};
      Q4FusionOperands fusion;
      fusion.eps = eps;
      if (c.fusion.input == Q4FusedInput::norm) {
        fusion.norm_weight = second_device.raw();
        fusion.input_delta = c.with_delta ? delta_device.raw() : 0;
      }
      if (c.fusion.input == Q4FusedInput::silu) fusion.up = second_device.raw();
      if (c.fusion.residual) {
        fusion.residual = residual_device.raw();
        fusion.residual_delta = c.with_delta ? residual_delta_device.raw() : 0;
        fusion.sorted_copy = sorted_copy.raw();
        fusion.sorted_position = sorted_position_device.raw();
      }
      for (int run = 0; run < 2; ++run) {
        backend_->memset(out.raw(), 0xff, size_t(c.N) * 2, {});  // fp16 NaN everywhere
        backend_->memset(sorted_copy.raw(), 0xff, size_t(c.N) * 2, {});
        backend_->copy_to_device(residual_device.raw(), residual.data(), residual.size() * 2, {});
        launch_q4_matmul_fused(*backend_, function, cfg, shape, operands, fusion, {});
        const std::vector<uint16_t> got =
            download_halves(c.fusion.residual ? residual_device : out, size_t(c.N));
        const double error = test::relative_error(got, want, want.size());
        if (c.fusion.residual) {
          const std::vector<uint16_t> copy = download_halves(sorted_copy, size_t(c.N));
          int misplaced = 0;
          for (int n = 0; n < c.N; ++n) misplaced += copy[size_t(sorted_position[n])] != got[n];
          EXPECT_EQ(misplaced, 0) << variant.config << ": sorted copy differs from the residual";
        }
        ++launches;
        worst = std::max(worst, std::isnan(error) ? INFINITY : error);
        if (!(error <= tolerance(cfg))) {
          ++failures;
          ADD_FAILURE() << variant.config << " on " << c.K << "->" << c.N << " g" << c.group_size
                        << (c.act_order ? " act" : "") << (c.with_delta ? " delta" : "") << " (run "
                        << run + 1 << "): relative error " << error << ";"
                        << test::first_mismatches(got, want, want.size(), c.N);
        }
      }
    }
  }
  EXPECT_GT(launches, 0);
  std::printf("q4_stream_fused GPU check on %s: %zu cases, %d launches, %d failures, worst %.2e\n",
              device.name.c_str(), cases.size(), launches, failures, worst);
}

}  // namespace
}  // namespace q4jit
