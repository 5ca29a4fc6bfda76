// The fused decode attention (attention_decode_rope_kernel: RoPE of the new token, its key and
// value into the cache and attention over the cache in one launch). No GPU: its variants' names,
// and NVRTC compiles of the fused variants for sm_75, sm_80, sm_86, sm_89 and sm_90 (the whole
// space for sm_90, the engine's configurations for the others) and of the unfused kernels of the
// engine's configurations for the architectures below sm_90 (skipped without NVRTC). On a GPU
// (skipped without one), every legal configuration against rope_cache then attention_decode with
// the same configuration and splits, on fresh random inputs with outputs and cache rows from the
// new position on poisoned: the same output bits (relative difference <= 1e-6), the same caches in
// full (the rotated key and the value at the position, no other row touched), q, k and v as they
// were, counters left zero; and ref::rope + ref::attention within 2e-3. Shapes: the fixture (H 8,
// Hkv 4, D 64) and Llama-7B (H 32, Hkv 32, D 128); lengths 1, 63, 64, 65, 300, 1100 across the
// split sizes; output in order, and scattered through out_position with two extra splits (a graph
// captured for a longer length). A position outside the cache writes nothing. Timings (not a
// bound): fused against unfused on Llama-7B's heads at 133, 1920 and 4096 positions, printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "kernel_sources/attention_decode.hpp"
#include "kernel_sources/rope_cache.hpp"
#include "runtime/kernel_service.hpp"
#include "tests/kernels/decode_rope_case.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/attention_runner.hpp"
#include "tuner/measure.hpp"

namespace q4jit {
namespace {

// Fused against unfused: the same arithmetic, but ptxas contracts the attention body differently
// in the two kernels, so a few output halves differ by one unit (H100: up to 2 halves of a case,
// 6.6e-5 relative). The caches, which take the pinned rotation only, stay bit-identical.
constexpr double kSameBits = 2e-4;
constexpr double kTolerance = 2e-3;  // against the fp32 reference
constexpr int kExtraRows = 40;       // cache rows past the length, never to be read
constexpr float kLlama3Theta = 500000.0f;

struct Heads {
  int H, Hkv, D;
};
constexpr Heads kFixture{8, 4, 64}, kLlama7B{32, 32, 128};
constexpr int kLengths[] = {1, 63, 64, 65, 300, 1100};

// --- no GPU

TEST(AttentionDecodeRopeVariants, NamesFollowTheConfig) {
  const KernelVariant fused = rope_variant(AttentionDecodeConfig{});
  EXPECT_EQ(fused.config, "d128.sp256.t128.hb1.rope");
  EXPECT_EQ(fused.name_expression, "attention_decode_rope_kernel<128, 256, 128, 1>");
  EXPECT_EQ(rope_variant({64, 512, 256, 2}).name_expression,
            "attention_decode_rope_kernel<64, 512, 256, 2>");
  std::set<std::string> configs, expressions;
  for (const AttentionDecodeConfig& cfg : attention_decode_configs()) {
    const KernelVariant variant = rope_variant(cfg);
    EXPECT_TRUE(configs.insert(variant.config).second) << variant.config;
    EXPECT_TRUE(expressions.insert(variant.name_expression).second) << variant.name_expression;
    EXPECT_NE(variant.config, to_string(cfg)) << "a store key of its own";
  }
  // A load (and `q4jit kernels compile`) compiles the fused defaults beside the unfused ones.
  const KernelFamily family = attention_decode_family();
  for (int dim : {64, 128}) {
    AttentionDecodeConfig defaults;
    defaults.head_dim = dim;
    const std::string wanted = rope_variant(defaults).name_expression;
    EXPECT_TRUE(std::any_of(family.default_variants.begin(), family.default_variants.end(),
                            [&](const KernelVariant& v) { return v.name_expression == wanted; }))
        << wanted;
  }
}

// The fused variants (or the unfused kernels) in programs of 8; every architecture the engine
// targets.
KernelVariant variant_of(const AttentionDecodeConfig& cfg, bool fused) {
  return fused ? rope_variant(cfg) : KernelVariant{to_string(cfg), name_expression(cfg)};
}

std::vector<CompileRequest> compile_requests(const std::vector<AttentionDecodeConfig>& configs,
                                             int sm, bool fused) {
  const KernelFamily family = attention_decode_family();
  std::vector<CompileRequest> requests;
  for (size_t i = 0; i < configs.size(); i += 8) {
    CompileRequest request = make_request(family, variant_of(configs[i], fused), {sm, false});
    request.config += "+";  // piece by piece: GCC 12 -O3 warns (-Wrestrict) on "+" + string
    request.config += std::to_string(std::min<size_t>(8, configs.size() - i) - 1);
    for (size_t j = i + 1; j < std::min(configs.size(), i + 8); ++j)
      request.name_expressions.push_back(variant_of(configs[j], fused).name_expression);
    requests.push_back(std::move(request));
  }
  return requests;
}

// The configurations GpuOps runs (one per split size) for the fixture's and Llama-7B's heads.
std::vector<AttentionDecodeConfig> engine_configs() {
  DeviceInfo device;
  device.max_threads_per_block = 1024;
  std::vector<AttentionDecodeConfig> configs;
  for (const Heads& heads : {kFixture, kLlama7B}) {
    for (const auto& [split, cfg] :
         decode_split_configs(device, {heads.H, heads.Hkv, heads.D, 8192}))
      configs.push_back(cfg);
  }
  return configs;
}

// The whole space for sm_90, and the engine's configurations for every other architecture (the
// body is the same template for all; the whole space for each took 2 minutes on 2 cores).
TEST(AttentionDecodeRopeCompile, FusedVariantsForEachArchitecture) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const auto started = std::chrono::steady_clock::now();
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  size_t kernels = 0;
  int failed = 0;
  for (int sm : {75, 80, 86, 89, 90}) {
    const std::vector<AttentionDecodeConfig> configs =
        sm == 90 ? attention_decode_configs() : engine_configs();
    kernels += configs.size();
    for (const Result<CompiledKernel>& result :
         service.get_all(compile_requests(configs, sm, true), jobs)) {
      if (!result) {
        ++failed;
        ADD_FAILURE() << "sm_" << sm << ": " << result.error().describe();
      }
    }
  }
  EXPECT_EQ(engine_configs().size(), 8u) << "four split sizes per geometry";
  std::printf("attention_decode_rope: %zu kernels for sm_75, 80, 86, 89, 90 in %.1f s, %d failed\n",
              kernels,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              failed);
}

// The unfused kernels of the engine's configurations for the architectures below sm_90 (OpsCompile
// compiles the whole space for sm_90): the two kernels share the body but not its kRope branches.
TEST(AttentionDecodeRopeCompile, UnfusedEngineVariantsForEachArchitecture) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  int compiled = 0;
  for (int sm : {75, 80, 86, 89}) {
    for (const Result<CompiledKernel>& result :
         service.get_all(compile_requests(engine_configs(), sm, false), jobs)) {
      if (result) {
        ++compiled;
      } else {
        ADD_FAILURE() << "sm_" << sm << ": " << result.error().describe();
      }
    }
  }
  EXPECT_EQ(compiled, 4) << "one program of the 8 configurations per architecture";
}

// --- GPU

class AttentionDecodeRopeGpu : public test::GpuTest {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();  // device 0 and NVRTC, or a skip with the printed reason
    if (IsSkipped()) return;
    service_ = std::make_unique<KernelService>(*compiler_, nullptr);
  }
  const DeviceInfo& device() const { return backend_->current_device(); }

  // The variants' kernels, by name expression.
  std::map<std::string, AttentionKernel> load(const KernelFamily& family,
                                              const std::vector<KernelVariant>& variants) {
    std::vector<Result<AttentionKernel>> loaded =
        load_attention_kernels(*backend_, *service_, family, variants, jobs());
    std::map<std::string, AttentionKernel> kernels;
    for (size_t i = 0; i < variants.size(); ++i) {
      if (loaded[i]) {
        kernels.emplace(variants[i].name_expression, loaded[i].value());
      } else {
        ADD_FAILURE() << loaded[i].error().describe();
      }
    }
    return kernels;
  }
  // Both kernels of every legal configuration of `shape`, and rope_cache's default (the first
  // legal configuration, which GpuOps runs, for every shape here).
  void load_for(const AttentionDecodeShape& shape) {
    std::vector<KernelVariant> variants;
    for (const AttentionDecodeConfig& cfg : space(device(), shape)) {
      variants.push_back({to_string(cfg), name_expression(cfg)});
      variants.push_back(rope_variant(cfg));
    }
    for (auto& [expression, kernel] : load(attention_decode_family(), variants))
      kernels_.insert_or_assign(expression, kernel);
    const RopeCacheConfig rope;
    for (auto& [expression, kernel] :
         load(rope_cache_family(), {{to_string(rope), name_expression(rope)}}))
      kernels_.insert_or_assign(expression, kernel);
  }

  // A case's inputs on the device: fresh copies, out poisoned, the workspace's counters zero and
  // its partials poisoned (sized for `splits` blocks per head group of `cfg`).
  struct DeviceStep {
    DeviceBuffer qkv, keys, values, positions, length, order, scratch, out;
    AttentionDecodeWorkspace layout;
  };
  DeviceStep upload_step(const test::DecodeRopeCase& c, const AttentionDecodeConfig& cfg,
                         int splits) {
    DeviceStep step;
    step.qkv = upload(c.qkv);
    step.keys = upload(c.keys);
    step.values = upload(c.values);
    step.positions = upload(std::vector<int32_t>{c.position()});
    step.length = upload(std::vector<int32_t>{c.length});
    step.order = upload(c.order);
    step.layout = workspace(cfg, {c.H, c.Hkv, c.D, int64_t(splits) * cfg.split});
    step.scratch = backend_->allocate(size_t(std::max<int64_t>(step.layout.bytes, 16)));
    backend_->memset(step.scratch.raw(), 0xff, size_t(step.layout.bytes), {});
    backend_->memset(step.scratch.raw(), 0, size_t(step.layout.partials_offset), {});
    step.out = backend_->allocate(c.want.size() * 2);
    backend_->memset(step.out.raw(), 0xff, c.want.size() * 2, {});
    return step;
  }

  // Enqueues one decode step of `c` with `cfg` over `splits` blocks per head group: fused, or
  // rope_cache (its default configuration, GpuOps's) then attention_decode.
  void enqueue(const test::DecodeRopeCase& c, const DeviceStep& step,
               const AttentionDecodeConfig& cfg, int splits, bool scattered, bool fused,
               StreamView stream) {
    const uint64_t q = step.qkv.raw(), k = q + 2 * uint64_t(c.H) * c.D;
    const uint64_t v = k + 2 * uint64_t(c.Hkv) * c.D;
    const AttentionDecodeShape shape{c.H, c.Hkv, c.D, c.length};
    const AttentionOperands operands{step.out.raw(), q, step.keys.raw(), step.values.raw()};
    const AttentionDecodeState state{step.scratch.raw(), step.length.raw(),
                                     scattered ? step.order.raw() : 0};
    const float scale = 1.0f / std::sqrt(float(c.D));
    if (fused) {
      const AttentionDecodeRope rope{k,       v,           step.positions.raw(), c.max_positions,
                                     c.theta, c.rope_scale};
      launch_attention_decode_rope(*backend_,
                                   kernels_.at(rope_variant(cfg).name_expression).function, cfg,
                                   shape, splits, operands, state, rope, scale, stream);
      return;
    }
    const RopeCacheConfig rope;
    const RopeCacheShape rope_shape{1,         c.H,       c.Hkv,     c.D,
                                    c.width(), c.width(), c.width(), c.max_positions};
    const RopeCacheGeometry g = geometry(rope, rope_shape);
    LaunchGeometry launch;
    launch.grid = {g.grid_x, g.grid_y, 1};
    launch.block = {g.block_x, 1, 1};
    launch_kernel(*backend_, kernels_.at(name_expression(rope)).function, launch, stream, q,
                  c.width(), k, c.width(), v, c.width(), step.keys.raw(), step.values.raw(),
                  step.positions.raw(), c.max_positions, c.H, c.Hkv, c.D, c.theta, c.rope_scale);
    launch_attention_decode(*backend_, kernels_.at(name_expression(cfg)).function, cfg, shape,
                            splits, operands, state, scale, stream);
  }

  // One decode step on fresh inputs and what it left on the device.
  test::DecodeRopeRun run(const test::DecodeRopeCase& c, const AttentionDecodeConfig& cfg,
                          int splits, bool scattered, bool fused) {
    const DeviceStep step = upload_step(c, cfg, splits);
    enqueue(c, step, cfg, splits, scattered, fused, {});
    test::DecodeRopeRun result;
    result.out = download_halves(step.out, c.want.size());
    result.qkv = download_halves(step.qkv, c.qkv.size());
    result.keys = download_halves(step.keys, c.cache_elements());
    result.values = download_halves(step.values, c.cache_elements());
    std::vector<uint8_t> counters(size_t(step.layout.partials_offset));
    backend_->copy_to_host(counters.data(), step.scratch.raw(), counters.size(), {});
    backend_->synchronize({});
    result.counters_zero =
        std::all_of(counters.begin(), counters.end(), [](uint8_t byte) { return byte == 0; });
    return result;
  }

  // Fused against unfused (and the reference) for one configuration; a failure names `label`.
  void compare(const test::DecodeRopeCase& c, const AttentionDecodeConfig& cfg, int splits,
               bool scattered, const std::string& label) {
    const test::DecodeRopeRun unfused = run(c, cfg, splits, scattered, false);
    const test::DecodeRopeRun fused = run(c, cfg, splits, scattered, true);
    ++launches_;
    const double difference = test::relative_difference(fused.out, unfused.out);
    worst_difference_ = std::max(worst_difference_, std::isnan(difference) ? INFINITY : difference);
    differing_outputs_ += test::differing_halves(fused.out, unfused.out);
    EXPECT_LE(difference, kSameBits)
        << label << ": " << test::differing_halves(fused.out, unfused.out)
        << " output halves differ from rope_cache + decode";
    EXPECT_EQ(test::differing_halves(fused.keys, unfused.keys), 0u) << label << ": key cache";
    EXPECT_EQ(test::differing_halves(fused.values, unfused.values), 0u) << label << ": values";
    EXPECT_EQ(test::differing_halves(fused.qkv, c.qkv), 0u) << label << ": q, k or v written";
    EXPECT_TRUE(fused.counters_zero && unfused.counters_zero) << label << ": counters";
    if (c.position() < c.max_positions) {
      const size_t row = size_t(c.position()) * c.row_elements();
      EXPECT_FALSE(test::any_nan(fused.keys.data() + row, c.row_elements()))
          << label << ": the key row at the position was not written";
      EXPECT_FALSE(test::any_nan(fused.values.data() + row, c.row_elements()))
          << label << ": the value row at the position was not written";
      const double error =
          test::relative_error(fused.out, scattered ? c.scattered_want : c.want, c.want.size());
      worst_error_ = std::max(worst_error_, std::isnan(error) ? INFINITY : error);
      EXPECT_LE(error, kTolerance) << label << ": against ref::rope + ref::attention";
    }
  }

  void summarize(const char* what) const {
    std::printf(
        "attention_decode_rope %s on %s: %lld comparisons, worst difference from unfused %.2e "
        "(%lld halves differ), worst error against the reference %.2e\n",
        what, device().name.c_str(), static_cast<long long>(launches_), worst_difference_,
        static_cast<long long>(differing_outputs_), worst_error_);
  }

  std::unique_ptr<KernelService> service_;
  std::map<std::string, AttentionKernel> kernels_;
  int64_t launches_ = 0, differing_outputs_ = 0;
  double worst_difference_ = 0, worst_error_ = 0;
};

TEST_F(AttentionDecodeRopeGpu, EveryConfigMatchesRopeCacheThenDecode) {
  std::mt19937 rng(611);
  for (const Heads& heads : {kFixture, kLlama7B}) {
    const auto [H, Hkv, D] = heads;
    load_for({H, Hkv, D, kLengths[std::size(kLengths) - 1]});
    for (int length : kLengths) {
      const test::DecodeRopeCase c =
          test::decode_rope_case(H, Hkv, D, length, length + kExtraRows, 10000.0f, 1.0f, rng);
      const std::vector<AttentionDecodeConfig> configs =
          space(device(), AttentionDecodeShape{H, Hkv, D, length});
      ASSERT_FALSE(configs.empty());
      for (const AttentionDecodeConfig& cfg : configs) {
        const int splits = (length + cfg.split - 1) / cfg.split;
        const std::string label = to_string(cfg) + " H" + std::to_string(H) + "/" +
                                  std::to_string(Hkv) + " length " + std::to_string(length);
        compare(c, cfg, splits, false, label);
        compare(c, cfg, splits + 2, true, label + " scattered, 2 extra splits");
      }
    }
  }
  summarize("every config");
}

// Llama-3's theta with linear scaling: the rotation's parameters reach the fused kernel.
TEST_F(AttentionDecodeRopeGpu, ThetaAndLinearScaling) {
  std::mt19937 rng(612);
  const auto [H, Hkv, D] = kLlama7B;
  load_for({H, Hkv, D, 2000});
  for (int length : {65, 2000}) {
    const test::DecodeRopeCase c =
        test::decode_rope_case(H, Hkv, D, length, length + kExtraRows, kLlama3Theta, 4.0f, rng);
    const std::map<int, AttentionDecodeConfig> configs =
        decode_split_configs(device(), {H, Hkv, D, length});
    for (const auto& [split, cfg] : configs)
      compare(c, cfg, (length + split - 1) / split, split == 64,
              to_string(cfg) + " theta 500000 scale 4 length " + std::to_string(length));
  }
  summarize("theta and scaling");
}

// positions[0] at max_positions: rope_cache writes nothing there, and neither may the fused launch;
// the attended row is read from the cache (old data) by both.
TEST_F(AttentionDecodeRopeGpu, PositionOutsideTheCacheWritesNothing) {
  std::mt19937 rng(613);
  const auto [H, Hkv, D] = kFixture;
  const int length = 100;
  load_for({H, Hkv, D, length});
  test::DecodeRopeCase c =
      test::decode_rope_case(H, Hkv, D, length, length + 8, 10000.0f, 1.0f, rng);
  c.max_positions = c.position();
  const std::vector<uint16_t> old_row = test::random_halves(c.row_elements(), 2.0f, rng);
  std::copy(old_row.begin(), old_row.end(), c.keys.begin() + c.position() * c.row_elements());
  std::copy(old_row.begin(), old_row.end(), c.values.begin() + c.position() * c.row_elements());
  for (const AttentionDecodeConfig& cfg :
       space(device(), AttentionDecodeShape{H, Hkv, D, length})) {
    const int splits = (length + cfg.split - 1) / cfg.split;
    compare(c, cfg, splits, false, to_string(cfg) + " position outside");
    const test::DecodeRopeRun fused = run(c, cfg, splits, false, true);
    EXPECT_EQ(test::differing_halves(fused.keys, c.keys), 0u) << to_string(cfg) << ": keys";
    EXPECT_EQ(test::differing_halves(fused.values, c.values), 0u) << to_string(cfg) << ": values";
    EXPECT_FALSE(test::any_nan(fused.out.data(), fused.out.size())) << to_string(cfg);
  }
  summarize("position outside the cache");
}

// Not a bound: the fused launch against rope_cache + attention_decode on Llama-7B's heads with
// GpuOps's split, timed as the tuner times (graphs of back-to-back calls, overlapped launches).
TEST_F(AttentionDecodeRopeGpu, Timings) {
  std::mt19937 rng(614);
  const auto [H, Hkv, D] = kLlama7B;
  load_for({H, Hkv, D, 4096});
  const std::map<int, AttentionDecodeConfig> configs =
      decode_split_configs(device(), {H, Hkv, D, 4096});
  for (int length : {133, 1920, 4096}) {
    const test::DecodeRopeCase c =
        test::decode_rope_case(H, Hkv, D, length, length, 10000.0f, 1.0f, rng);
    const int split = default_decode_split(configs, H, device().sm_count, length);
    const AttentionDecodeConfig& cfg = configs.at(split);
    const int splits = (length + split - 1) / split;
    const DeviceStep step = upload_step(c, cfg, splits);
    double us[2] = {};
    for (bool fused : {false, true}) {
      const auto call = [&](int, StreamView stream) {
        enqueue(c, step, cfg, splits, false, fused, stream);
      };
      const double probe = time_calls(*backend_, 1, call, probe_measure_options()).median_us;
      us[fused] = time_calls(*backend_, 1, call, measure_options_for(probe)).median_us;
    }
    std::printf(
        "attention_decode_rope timing on %s: H%d D%d length %d, %s x %d splits: rope_cache + "
        "attention_decode %.2f us, fused %.2f us (x32 layers: %.0f us saved per step)\n",
        device().name.c_str(), H, D, length, to_string(cfg).c_str(), splits, us[0], us[1],
        32 * (us[0] - us[1]));
    EXPECT_GT(us[1], 0.0);
  }
}

}  // namespace
}  // namespace q4jit
