// The forward pass's other ops as kernel families (embedding, rope_cache, attention_decode,
// attention_prefill, silu_mul, residual_add, logits_f32, lm_head): their spaces and descriptors
// (no GPU), the whole space compiling for sm_90 through NVRTC (no GPU; skipped without NVRTC), and
// on a GPU every legal configuration against the CPU reference (model/ref) on fresh random inputs,
// outputs poisoned with NaN before each launch, inputs the kernel must not read (cache rows past
// the sequence) poisoned too. Shapes: the fixture (C 512, H 8, Hkv 4, D 64), Llama-7B (C 4096,
// H 32, D 128) and a 70B-like GQA (H 64, Hkv 8, D 128); sequence lengths 1, 17, 100, 1000+;
// T = 1, 3, 64 (and 130 for prefill: several query blocks).
// Bound: relative error (norm of difference / norm of reference) <= 2e-3 for every fp16 output;
// copies (embedding, logits_f32, the value cache) must be exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "common/half.hpp"
#include "kernel_sources/attention_decode.hpp"
#include "kernel_sources/attention_prefill.hpp"
#include "kernel_sources/elementwise.hpp"
#include "kernel_sources/embedding.hpp"
#include "kernel_sources/lm_head.hpp"
#include "kernel_sources/rms_norm.hpp"
#include "kernel_sources/rope_cache.hpp"
#include "model/ref/cpu_engine.hpp"
#include "runtime/kernel_service.hpp"
#include "runtime/platform.hpp"
#include "tests/kernels/kernel_test_support.hpp"

namespace q4jit {
namespace {

constexpr double kTolerance = 2e-3;
constexpr uint16_t kHalfNaN = 0xffff;

struct Heads {
  int H, Hkv, D;
  std::string name() const {
    std::string text = "H";
    text += std::to_string(H) + "/" + std::to_string(Hkv) + " D" + std::to_string(D);
    return text;
  }
};
const Heads kHeadShapes[] = {{8, 4, 64}, {32, 32, 128}, {64, 8, 128}};

DeviceInfo test_device() {
  DeviceInfo device;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = 227 * 1024;
  return device;
}

std::vector<uint16_t> random_halves(size_t count, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<uint16_t> values(count);
  for (uint16_t& value : values) value = float_to_half(normal(rng));
  return values;
}

std::vector<float> to_floats(const std::vector<uint16_t>& halves) {
  std::vector<float> values(halves.size());
  for (size_t i = 0; i < halves.size(); ++i) values[i] = half_to_float(halves[i]);
  return values;
}

// Norm of the difference over norm of the reference; NaN anywhere gives NaN (fails every bound).
double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - want[i];
    difference += d * d;
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(difference / norm);
}

// --- no GPU: the spaces

template <typename Config>
void expect_unique_names(const std::vector<Config>& configs, const KernelFamily& family,
                         const Config& defaults) {
  ASSERT_FALSE(configs.empty());
  EXPECT_EQ(to_string(configs.front()), to_string(defaults));
  std::set<std::string> names, expressions;
  for (const Config& cfg : configs) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << to_string(cfg);
    EXPECT_TRUE(expressions.insert(name_expression(cfg)).second) << name_expression(cfg);
  }
  EXPECT_EQ(family.all_variants.size(), configs.size());
  EXPECT_FALSE(family.default_variants.empty());
}

TEST(OpsSpace, DefaultsFirstAndNamesUnique) {
  expect_unique_names(embedding_configs(), embedding_family(), EmbeddingConfig{});
  expect_unique_names(rope_cache_configs(), rope_cache_family(), RopeCacheConfig{});
  expect_unique_names(attention_decode_configs(), attention_decode_family(),
                      AttentionDecodeConfig{});
  expect_unique_names(attention_prefill_configs(), attention_prefill_family(),
                      AttentionPrefillConfig{});
  expect_unique_names(lm_head_configs(), lm_head_family(), LmHeadConfig{});
  EXPECT_EQ(elementwise_configs().size(), silu_mul_family().all_variants.size());
  EXPECT_EQ(silu_mul_family().all_variants[0].name_expression, "silu_mul_kernel<256, 8>");
  EXPECT_EQ(residual_add_family().all_variants[0].name_expression, "residual_add_kernel<256, 8>");
  EXPECT_EQ(logits_f32_family().all_variants[0].config, "bt256.vw8");
  EXPECT_EQ(to_string(AttentionDecodeConfig{}), "d128.sp256.t128.hb1");
  EXPECT_EQ(name_expression(AttentionPrefillConfig{}), "attention_prefill_kernel<128, 32, 64, 4>");
}

TEST(OpsSpace, LegalityFollowsShape) {
  const DeviceInfo device = test_device();
  EXPECT_TRUE(legal(EmbeddingConfig{}, device, {3, 4096, 512}));
  EXPECT_FALSE(legal(EmbeddingConfig{}, device, {3, 4096, 516})) << "hidden % 8";
  EXPECT_TRUE(legal(EmbeddingConfig{128, 4}, device, {3, 4096, 516}));

  const RopeCacheShape rope{3, 8, 4, 64, 0, 0, 0, 128};
  EXPECT_TRUE(legal(RopeCacheConfig{}, device, rope));
  RopeCacheShape odd_stride = rope;
  odd_stride.q_stride = 8 * 64 + 1;
  EXPECT_FALSE(legal(RopeCacheConfig{}, device, odd_stride)) << "stride % vw";
  EXPECT_TRUE(legal(RopeCacheConfig{64, 1}, device, odd_stride));
  EXPECT_FALSE(legal(RopeCacheConfig{}, device, {3, 8, 3, 64, 0, 0, 0, 128})) << "H % Hkv";

  const AttentionDecodeShape decode{64, 8, 128, 1000};
  EXPECT_TRUE(legal(AttentionDecodeConfig{128, 256, 128, 8}, device, decode));
  EXPECT_FALSE(legal(AttentionDecodeConfig{64, 256, 128, 1}, device, decode)) << "D";
  EXPECT_FALSE(legal(AttentionDecodeConfig{128, 256, 128, 2}, device, {32, 32, 128, 10}))
      << "heads per block beyond the group";
  EXPECT_EQ(geometry(AttentionDecodeConfig{}, decode).grid_y, 4u);
  EXPECT_EQ(workspace(AttentionDecodeConfig{128, 1024 / 2, 128, 1}, {8, 4, 128, 100}).bytes, 256)
      << "one split: counters only";

  const AttentionPrefillShape prefill{64, 17, 8, 4, 64, 0, 0};
  EXPECT_TRUE(legal(AttentionPrefillConfig{64, 32, 64, 4}, device, prefill));
  EXPECT_FALSE(legal(AttentionPrefillConfig{64, 64, 64, 2}, device, prefill)) << "32 per warp";
  DeviceInfo small = device;
  small.smem_per_block_optin = 48 * 1024;
  EXPECT_FALSE(legal(AttentionPrefillConfig{128, 64, 64, 8}, small, {1, 0, 8, 8, 128, 0, 0}))
      << "49 KB of shared memory";

  EXPECT_TRUE(legal(ElementwiseOp::silu_mul, ElementwiseConfig{}, device, {3, 1408, 2816, 2816}));
  EXPECT_FALSE(legal(ElementwiseOp::silu_mul, ElementwiseConfig{}, device, {3, 1408, 1000, 0}))
      << "stride below the row";
  EXPECT_FALSE(legal(ElementwiseOp::residual_add, ElementwiseConfig{}, device, {1, 12, 0, 0}));
  EXPECT_TRUE(legal(LmHeadConfig{8, 4, true}, device, {3, 512, 4096}));
  EXPECT_FALSE(legal(LmHeadConfig{8, 8, true}, device, {3, 512, 4096})) << "mostly padding";
  EXPECT_FALSE(legal(LmHeadConfig{}, device, {1, 500, 4096})) << "C % 8";
}

// A family's whole space plus the default variants outside it (the fused add_rms_norm kernels at
// the block sizes the engine picks are kernels of their own, not configurations).
std::vector<KernelVariant> variants_to_check(const KernelFamily& family) {
  std::vector<KernelVariant> variants = family.all_variants;
  for (const KernelVariant& variant : family.default_variants) {
    const bool listed = std::any_of(variants.begin(), variants.end(), [&](const auto& other) {
      return other.name_expression == variant.name_expression;
    });
    if (!listed) variants.push_back(variant);
  }
  return variants;
}

// Every family's variants in programs of a few kernels each.
std::vector<CompileRequest> family_requests(const KernelFamily& family,
                                            const std::vector<KernelVariant>& variants,
                                            const CompileTarget& target, size_t per_program) {
  std::vector<CompileRequest> requests;
  for (size_t i = 0; i < variants.size(); i += per_program) {
    CompileRequest request = make_request(family, variants[i], target);
    request.config += "+";
    request.config += std::to_string(std::min(per_program, variants.size() - i) - 1);
    for (size_t j = i + 1; j < std::min(variants.size(), i + per_program); ++j)
      request.name_expressions.push_back(variants[j].name_expression);
    requests.push_back(std::move(request));
  }
  return requests;
}

std::vector<KernelFamily> op_families() {
  return {embedding_family(),         rope_cache_family(), attention_decode_family(),
          attention_prefill_family(), silu_mul_family(),   residual_add_family(),
          logits_f32_family(),        lm_head_family(),    rms_norm_family()};
}

// The whole space of every op family compiles (no GPU needed).
TEST(OpsCompile, WholeSpaceForSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  std::vector<CompileRequest> requests;
  size_t kernels = 0;
  for (const KernelFamily& family : op_families()) {
    const std::vector<KernelVariant> variants = variants_to_check(family);
    kernels += variants.size();
    for (CompileRequest& request : family_requests(family, variants, {90, false}, 8))
      requests.push_back(std::move(request));
  }
  const auto started = std::chrono::steady_clock::now();
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  int failed = 0;
  for (const Result<CompiledKernel>& result : service.get_all(requests, jobs)) {
    if (!result) {
      ++failed;
      ADD_FAILURE() << result.error().describe();
    }
  }
  std::printf("op families: %zu kernels in %zu programs compiled for sm_90 in %.1f s, %d failed\n",
              kernels, requests.size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              failed);
}

// --- GPU

struct Kernel {
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

class OpsGpu : public test::GpuTest {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();  // device 0 and NVRTC, or a skip with the printed reason
    if (IsSkipped()) return;
    started_ = std::chrono::steady_clock::now();
  }
  const DeviceInfo& device() const { return backend_->current_device(); }

  // Every variant of `family`, compiled and loaded, by name expression.
  std::map<std::string, Kernel> load(const KernelFamily& family) {
    KernelService service(*compiler_, nullptr);
    const CompileTarget target = select_target(device().sm(), compiler_->supported_archs());
    const auto requests = family_requests(family, variants_to_check(family), target, 4);
    const auto results =
        service.get_all(requests, std::max(1u, std::thread::hardware_concurrency()));
    std::map<std::string, Kernel> kernels;
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i]) {
        ADD_FAILURE() << results[i].error().describe();
        continue;
      }
      auto module = std::make_shared<LoadedModule>(backend_->load_module(results[i].value()));
      for (const std::string& expression : requests[i].name_expressions) {
        kernels[expression] = {module, module->function(expression)};
        const FunctionAttributes attributes = backend_->attributes(kernels[expression].function);
        max_registers_ = std::max(max_registers_, attributes.registers);
        max_local_bytes_ = std::max(max_local_bytes_, attributes.local_bytes);
      }
    }
    return kernels;
  }

  // A buffer of `bytes` filled with 0xff: NaN as fp16 and as fp32.
  DeviceBuffer poisoned(size_t bytes) {
    DeviceBuffer buffer = backend_->allocate(std::max<size_t>(bytes, 16));
    backend_->memset(buffer.raw(), 0xff, bytes, {});
    return buffer;
  }
  template <typename T>
  std::vector<T> download(const DeviceBuffer& buffer, size_t count) {
    std::vector<T> host(count);
    backend_->copy_to_host(host.data(), buffer.raw(), count * sizeof(T), {});
    backend_->synchronize({});
    return host;
  }

  // Records one checked launch; fails the test when error > bound (or NaN).
  void check(const std::string& label, double error, double bound = kTolerance) {
    ++launches_;
    worst_ = std::max(worst_, std::isnan(error) ? INFINITY : error);
    if (!(error <= bound)) ADD_FAILURE() << label << ": relative error " << error << " > " << bound;
  }
  void summarize(const char* family, size_t configs, size_t cases) {
    std::printf(
        "ops GPU %s on %s: %zu configs (at most %d registers, %lld local bytes), %zu cases, %lld "
        "launches, worst relative error %.2e, %.1f s\n",
        family, device().name.c_str(), configs, max_registers_,
        static_cast<long long>(max_local_bytes_), cases, static_cast<long long>(launches_), worst_,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  }
  // Mean microseconds of `launch` over 20 runs after 3 warm-up runs.
  template <typename Launch>
  double time_us(const Launch& launch) {
    for (int i = 0; i < 3; ++i) launch();
    Event start = backend_->create_event(), end = backend_->create_event();
    backend_->record(start, {});
    for (int i = 0; i < 20; ++i) launch();
    backend_->record(end, {});
    return backend_->elapsed_ms(start, end) * 1000.0 / 20;
  }

  std::chrono::steady_clock::time_point started_;
  int64_t launches_ = 0;
  double worst_ = 0;
  int max_registers_ = 0;
  int64_t max_local_bytes_ = 0;  // spills and local arrays: a speed problem, not a wrong result
};

LaunchGeometry launch_geometry(unsigned grid_x, unsigned grid_y, unsigned block_x,
                               int64_t smem = 0) {
  LaunchGeometry launch;
  launch.grid = {grid_x, grid_y, 1};
  launch.block = {block_x, 1, 1};
  launch.dynamic_smem_bytes = smem;
  return launch;
}

TEST_F(OpsGpu, EmbeddingEveryConfig) {
  const auto kernels = load(embedding_family());
  std::mt19937 rng(401);
  size_t cases = 0;
  for (const auto& [V, C] : {std::pair{4096, 512}, std::pair{32000, 4096}}) {
    const std::vector<uint16_t> table = random_halves(size_t(V) * C, rng);
    const DeviceBuffer table_device = upload(table);
    for (int T : {1, 17, 64}) {
      ++cases;
      std::uniform_int_distribution<int> token(0, V - 1);
      std::vector<int32_t> tokens(T);
      for (int32_t& t : tokens) t = token(rng);
      const int bad_ids[] = {-1, V, INT_MAX, INT_MIN};
      int bad = 0;
      for (int i = 1; i < T; i += 5) tokens[i] = bad_ids[bad++ % 4];
      const DeviceBuffer tokens_device = upload(tokens);
      const EmbeddingShape shape{T, V, C};
      for (const EmbeddingConfig& cfg : space(device(), shape)) {
        const DeviceBuffer out = poisoned(size_t(T) * C * 2);
        const DeviceBuffer counter = upload(std::vector<int32_t>{0});
        const EmbeddingGeometry g = geometry(cfg, shape);
        launch_kernel(*backend_, kernels.at(name_expression(cfg)).function,
                      launch_geometry(g.grid_x, 1, g.block_x), {}, out.raw(), table_device.raw(),
                      tokens_device.raw(), V, C, counter.raw());
        const std::vector<uint16_t> got = download<uint16_t>(out, size_t(T) * C);
        int mismatched_rows = 0;
        for (int t = 0; t < T; ++t) {
          const bool valid = tokens[t] >= 0 && tokens[t] < V;
          for (int c = 0; c < C; ++c) {
            const uint16_t want = valid ? table[size_t(tokens[t]) * C + c] : 0;
            if (got[size_t(t) * C + c] != want) {
              ++mismatched_rows;
              break;
            }
          }
        }
        check(to_string(cfg) + " V" + std::to_string(V) + " T" + std::to_string(T),
              mismatched_rows == 0 ? 0.0 : 1.0, 0.0);
        EXPECT_EQ(download<int32_t>(counter, 1)[0], bad) << to_string(cfg) << ": bad-id count";
      }
    }
  }
  summarize("embedding", kernels.size(), cases);
}

struct RopeCase {
  Heads heads;
  int T;
  bool fused;  // q, k, v as views of one [T, (H + 2 Hkv) D] buffer
  float theta, scale;
};

TEST_F(OpsGpu, RopeCacheEveryConfig) {
  const auto kernels = load(rope_cache_family());
  std::mt19937 rng(402);
  std::vector<RopeCase> cases;
  for (const Heads& heads : kHeadShapes) {
    for (int T : {1, 3, 64}) {
      cases.push_back({heads, T, T != 3, 10000.0f, 1.0f});
    }
    cases.push_back({heads, 17, false, 500000.0f, 4.0f});  // Llama-3 theta, linear scaling
  }
  for (const RopeCase& c : cases) {
    const auto [H, Hkv, D] = c.heads;
    const int max_positions = 2100;
    const int width = (H + 2 * Hkv) * D;  // fused row
    const std::vector<uint16_t> qkv = random_halves(size_t(c.T) * width, rng);
    std::vector<int32_t> positions(c.T);
    std::uniform_int_distribution<int> position(0, max_positions - 1);
    for (int t = 0; t < c.T; ++t) positions[t] = t == 0 ? max_positions - 1 : position(rng);
    if (c.T > 2) positions[1] = 0;
    std::sort(positions.begin(), positions.end());  // distinct rows: no write races to compare
    positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
    const int T = static_cast<int>(positions.size());
    // Host views: q [T, H, D], k and v [T, Hkv, D] in fp32.
    std::vector<float> q(size_t(T) * H * D), k(size_t(T) * Hkv * D), v(k.size());
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < H * D; ++i)
        q[size_t(t) * H * D + i] = half_to_float(qkv[size_t(t) * width + i]);
      for (int i = 0; i < Hkv * D; ++i) {
        k[size_t(t) * Hkv * D + i] = half_to_float(qkv[size_t(t) * width + H * D + i]);
        v[size_t(t) * Hkv * D + i] = half_to_float(qkv[size_t(t) * width + (H + Hkv) * D + i]);
      }
    }
    std::vector<float> want_q = q, want_k = k;
    ref::rope(want_q.data(), positions.data(), T, H, D, c.theta, c.scale);
    ref::rope(want_k.data(), positions.data(), T, Hkv, D, c.theta, c.scale);

    const DeviceBuffer positions_device = upload(positions);
    RopeCacheShape shape{T, H, Hkv, D, 0, 0, 0, max_positions};
    // Separate buffers: q [T, H, D], k and v [T, Hkv, D]; fused: strides of the qkv row.
    std::vector<uint16_t> q_only, k_only, v_only;
    for (int t = 0; t < T; ++t) {
      const uint16_t* row = qkv.data() + size_t(t) * width;
      q_only.insert(q_only.end(), row, row + H * D);
      k_only.insert(k_only.end(), row + H * D, row + (H + Hkv) * D);
      v_only.insert(v_only.end(), row + (H + Hkv) * D, row + width);
    }
    if (c.fused) shape.q_stride = shape.k_stride = shape.v_stride = width;
    const std::string label_case = c.heads.name() + " T" + std::to_string(T) +
                                   (c.fused ? " fused" : "") + " theta" +
                                   std::to_string(int(c.theta));
    for (const RopeCacheConfig& cfg : space(device(), shape)) {
      const std::string label = to_string(cfg) + " " + label_case;
      const DeviceBuffer fused = upload(c.fused ? qkv : q_only);
      const DeviceBuffer k_device = upload(k_only), v_device = upload(v_only);
      const uint64_t q_address = fused.raw();
      const uint64_t k_address = c.fused ? fused.raw() + size_t(H) * D * 2 : k_device.raw();
      const uint64_t v_address = c.fused ? fused.raw() + size_t(H + Hkv) * D * 2 : v_device.raw();
      const size_t cache_elements = size_t(max_positions) * Hkv * D;
      const DeviceBuffer key_cache = poisoned(cache_elements * 2);
      const DeviceBuffer value_cache = poisoned(cache_elements * 2);
      const RopeCacheGeometry g = geometry(cfg, shape);
      const int q_stride = c.fused ? width : H * D, kv_stride = c.fused ? width : Hkv * D;
      launch_kernel(*backend_, kernels.at(name_expression(cfg)).function,
                    launch_geometry(g.grid_x, g.grid_y, g.block_x), {}, q_address, q_stride,
                    k_address, kv_stride, v_address, kv_stride, key_cache.raw(), value_cache.raw(),
                    positions_device.raw(), max_positions, H, Hkv, D, c.theta, c.scale);
      const std::vector<uint16_t> got_q_raw =
          download<uint16_t>(fused, c.fused ? qkv.size() : q_only.size());
      const std::vector<uint16_t> keys = download<uint16_t>(key_cache, cache_elements);
      const std::vector<uint16_t> values = download<uint16_t>(value_cache, cache_elements);
      std::vector<float> got_q(q.size()), got_k(k.size());
      std::vector<bool> written(max_positions, false);
      int value_mismatches = 0;
      for (int t = 0; t < T; ++t) {
        for (int i = 0; i < H * D; ++i)
          got_q[size_t(t) * H * D + i] = half_to_float(got_q_raw[size_t(t) * q_stride + i]);
        written[positions[t]] = true;
        const size_t row = size_t(positions[t]) * Hkv * D;
        for (int i = 0; i < Hkv * D; ++i) {
          got_k[size_t(t) * Hkv * D + i] = half_to_float(keys[row + i]);
          value_mismatches += values[row + i] != v_only[size_t(t) * Hkv * D + i];
        }
      }
      if (c.fused) {  // k and v inside the fused row are read only
        for (int t = 0; t < T; ++t)
          EXPECT_TRUE(std::equal(qkv.begin() + size_t(t) * width + H * D,
                                 qkv.begin() + size_t(t + 1) * width,
                                 got_q_raw.begin() + size_t(t) * width + H * D))
              << label << ": k or v changed";
      }
      int stray_writes = 0;
      for (int p = 0; p < max_positions; ++p) {
        if (written[p]) continue;
        for (int i = 0; i < Hkv * D; i += 7) {
          stray_writes += keys[size_t(p) * Hkv * D + i] != kHalfNaN;
          stray_writes += values[size_t(p) * Hkv * D + i] != kHalfNaN;
        }
      }
      EXPECT_EQ(value_mismatches, 0) << label << ": value cache";
      EXPECT_EQ(stray_writes, 0) << label << ": cache rows of other positions";
      check(label + " q", relative_error(got_q, want_q));
      check(label + " k", relative_error(got_k, want_k));
    }
  }
  summarize("rope_cache", kernels.size(), cases.size());
}

TEST_F(OpsGpu, RopeCacheSkipsPositionsOutsideTheCache) {
  const auto kernels = load(rope_cache_family());
  std::mt19937 rng(403);
  const int H = 8, Hkv = 4, D = 64, P = 16;
  const std::vector<int32_t> positions = {3, P, -1};
  const std::vector<uint16_t> q = random_halves(3 * H * D, rng),
                              kv = random_halves(3 * Hkv * D, rng);
  const DeviceBuffer q_device = upload(q), k_device = upload(kv), v_device = upload(kv),
                     positions_device = upload(positions);
  const DeviceBuffer key_cache = poisoned(size_t(P) * Hkv * D * 2),
                     value_cache = poisoned(size_t(P) * Hkv * D * 2);
  const RopeCacheConfig cfg;
  launch_kernel(*backend_, kernels.at(name_expression(cfg)).function, launch_geometry(3, 1, 128),
                {}, q_device.raw(), H * D, k_device.raw(), Hkv * D, v_device.raw(), Hkv * D,
                key_cache.raw(), value_cache.raw(), positions_device.raw(), P, H, Hkv, D, 10000.0f,
                1.0f);
  const std::vector<uint16_t> values = download<uint16_t>(value_cache, size_t(P) * Hkv * D);
  for (int p = 0; p < P; ++p) {
    const uint16_t expected = p == 3 ? kv[0] : kHalfNaN;
    EXPECT_EQ(values[size_t(p) * Hkv * D], expected) << "position " << p;
  }
}

// A layer's cache [P_max, Hkv, D]: random rows below `filled`, NaN rows from there on (they
// must never be read), and the fp32 copy of the filled part for the reference.
struct Cache {
  std::vector<uint16_t> keys, values;
  std::vector<float> keys_float, values_float;  // [filled, Hkv, D]
};

Cache random_cache(const Heads& heads, int filled, int max_positions, std::mt19937& rng) {
  const size_t row = size_t(heads.Hkv) * heads.D;
  Cache cache;
  cache.keys = random_halves(size_t(filled) * row, rng);
  cache.values = random_halves(size_t(filled) * row, rng);
  cache.keys_float = to_floats(cache.keys);
  cache.values_float = to_floats(cache.values);
  cache.keys.resize(size_t(max_positions) * row, kHalfNaN);
  cache.values.resize(size_t(max_positions) * row, kHalfNaN);
  return cache;
}

TEST_F(OpsGpu, AttentionDecodeEveryConfig) {
  const auto kernels = load(attention_decode_family());
  std::mt19937 rng(404);
  size_t cases = 0;
  for (const Heads& heads : kHeadShapes) {
    for (int length : {1, 17, 100, 1100, 2053}) {
      ++cases;
      const auto [H, Hkv, D] = heads;
      const Cache cache = random_cache(heads, length, length + 40, rng);
      const std::vector<uint16_t> q = random_halves(size_t(H) * D, rng);
      std::vector<float> want(size_t(H) * D);
      ref::attention(to_floats(q).data(), cache.keys_float.data(), cache.values_float.data(),
                     want.data(), 1, length - 1, H, Hkv, D);
      const DeviceBuffer q_device = upload(q), keys = upload(cache.keys),
                         values = upload(cache.values);
      const AttentionDecodeShape shape{H, Hkv, D, length};
      const std::vector<AttentionDecodeConfig> configs = space(device(), shape);
      ASSERT_FALSE(configs.empty()) << heads.name();
      int64_t workspace_bytes = 0;
      for (const AttentionDecodeConfig& cfg : configs) {
        const AttentionDecodeShape wide{H, Hkv, D, length + 2 * cfg.split};
        workspace_bytes = std::max(workspace_bytes, workspace(cfg, wide).bytes);
      }
      // Partials poisoned, counters zero: each launch must leave its counters zero again.
      const DeviceBuffer scratch = poisoned(static_cast<size_t>(workspace_bytes));
      backend_->memset(scratch.raw(), 0,
                       static_cast<size_t>(workspace(configs[0], shape).partials_offset), {});
      const DeviceBuffer length_device = upload(std::vector<int32_t>{length});
      std::vector<int32_t> order(want.size());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<float> scattered_want(want.size());
      for (size_t i = 0; i < want.size(); ++i) scattered_want[size_t(order[i])] = want[i];
      const DeviceBuffer order_device = upload(order);
      for (const AttentionDecodeConfig& cfg : configs) {
        const AttentionDecodeWorkspace layout = workspace(cfg, shape);
        const AttentionDecodeGeometry g = geometry(cfg, shape);
        // Run 2 launches two splits more than the length needs, as a graph captured for a
        // longer length does: the extra splits must add nothing.
        const AttentionDecodeWorkspace wide = workspace(cfg, {H, Hkv, D, length + 2 * cfg.split});
        ASSERT_LE(wide.bytes, workspace_bytes) << to_string(cfg);
        for (int run = 0; run < 2; ++run) {
          // Run 2 also writes through a random output order, as for an act-order o projection.
          const DeviceBuffer out = poisoned(size_t(H) * D * 2);
          launch_kernel(*backend_, kernels.at(name_expression(cfg)).function,
                        launch_geometry(g.grid_x, g.grid_y + (run == 1 ? 2 : 0), g.block_x), {},
                        out.raw(), q_device.raw(), keys.raw(), values.raw(), scratch.raw(),
                        scratch.raw() + layout.partials_offset, length_device.raw(), H, Hkv,
                        1.0f / std::sqrt(float(D)), run == 1 ? order_device.raw() : uint64_t(0));
          check(to_string(cfg) + " " + heads.name() + " length " + std::to_string(length) +
                    (run == 1 ? " with 2 extra splits, scattered" : ""),
                relative_error(to_floats(download<uint16_t>(out, want.size())),
                               run == 1 ? scattered_want : want));
        }
      }
    }
  }
  summarize("attention_decode", kernels.size(), cases);
}

TEST_F(OpsGpu, AttentionPrefillEveryConfig) {
  const auto kernels = load(attention_prefill_family());
  std::mt19937 rng(405);
  size_t cases = 0;
  for (const Heads& heads : kHeadShapes) {
    for (int T : {1, 3, 64, 130}) {
      for (int first : {0, 17, 1000}) {
        ++cases;
        const auto [H, Hkv, D] = heads;
        const int length = first + T;
        const Cache cache = random_cache(heads, length, length + 70, rng);
        // q as a view of a fused qkv row for odd T, packed otherwise.
        const int q_stride = T % 2 ? (H + 2 * Hkv) * D : H * D;
        const std::vector<uint16_t> q = random_halves(size_t(T) * q_stride, rng);
        std::vector<float> q_packed(size_t(T) * H * D);
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < H * D; ++i)
            q_packed[size_t(t) * H * D + i] = half_to_float(q[size_t(t) * q_stride + i]);
        std::vector<float> want(q_packed.size());
        ref::attention(q_packed.data(), cache.keys_float.data(), cache.values_float.data(),
                       want.data(), T, first, H, Hkv, D);
        const DeviceBuffer q_device = upload(q), keys = upload(cache.keys),
                           values = upload(cache.values);
        const AttentionPrefillShape shape{T, first, H, Hkv, D, q_stride, 0};
        const std::vector<AttentionPrefillConfig> configs = space(device(), shape);
        EXPECT_FALSE(configs.empty()) << heads.name();
        for (const AttentionPrefillConfig& cfg : configs) {
          const AttentionPrefillGeometry g = geometry(cfg, shape);
          const DeviceBuffer out = poisoned(want.size() * 2);
          launch_kernel(*backend_, kernels.at(name_expression(cfg)).function,
                        launch_geometry(g.grid_x, g.grid_y, g.block_x, g.dynamic_smem_bytes), {},
                        out.raw(), H * D, q_device.raw(), q_stride, keys.raw(), values.raw(), T,
                        first, H, Hkv, 1.0f / std::sqrt(float(D)));
          check(to_string(cfg) + " " + heads.name() + " T" + std::to_string(T) + " p0 " +
                    std::to_string(first),
                relative_error(to_floats(download<uint16_t>(out, want.size())), want));
        }
      }
    }
  }
  summarize("attention_prefill", kernels.size(), cases);
}

TEST_F(OpsGpu, SiluMulEveryConfig) {
  const auto kernels = load(silu_mul_family());
  std::mt19937 rng(406);
  size_t cases = 0;
  for (int F : {1408, 11008, 28672 + 8}) {
    for (int M : {1, 3, 64}) {
      for (bool fused : {false, true}) {  // fused: one [M, 2F] gate_up output
        ++cases;
        const std::vector<uint16_t> gate_up = random_halves(size_t(M) * 2 * F, rng, 2.0f);
        std::vector<float> gate(size_t(M) * F), up(gate.size()), want(gate.size());
        for (int m = 0; m < M; ++m) {
          for (int f = 0; f < F; ++f) {
            gate[size_t(m) * F + f] = half_to_float(gate_up[size_t(m) * 2 * F + f]);
            up[size_t(m) * F + f] = half_to_float(gate_up[size_t(m) * 2 * F + F + f]);
          }
        }
        ref::silu_mul(gate.data(), up.data(), want.data(), want.size());
        std::vector<uint16_t> gate_half(gate.size()), up_half(up.size());
        for (size_t i = 0; i < gate.size(); ++i)
          gate_half[i] = float_to_half(gate[i]), up_half[i] = float_to_half(up[i]);
        const DeviceBuffer fused_device = upload(gate_up), gate_device = upload(gate_half),
                           up_device = upload(up_half);
        const uint64_t gate_address = fused ? fused_device.raw() : gate_device.raw();
        const uint64_t up_address = fused ? fused_device.raw() + size_t(F) * 2 : up_device.raw();
        const int stride = fused ? 2 * F : F;
        const ElementwiseShape shape{M, F, stride, stride};
        for (const ElementwiseConfig& cfg : space(ElementwiseOp::silu_mul, device(), shape)) {
          const ElementwiseGeometry g = geometry(ElementwiseOp::silu_mul, cfg, shape);
          const DeviceBuffer out = poisoned(want.size() * 2);
          launch_kernel(*backend_,
                        kernels.at(name_expression(ElementwiseOp::silu_mul, cfg)).function,
                        launch_geometry(g.grid_x, g.grid_y, g.block_x), {}, out.raw(), gate_address,
                        stride, up_address, stride, F);
          check(to_string(cfg) + " F" + std::to_string(F) + " M" + std::to_string(M) +
                    (fused ? " fused" : ""),
                relative_error(to_floats(download<uint16_t>(out, want.size())), want));
        }
      }
    }
  }
  summarize("silu_mul", kernels.size(), cases);
}

// The fused residual add + RMSNorm with an act-order output order at every block size the engine
// picks, against the unfused CPU definition.
TEST_F(OpsGpu, FusedAddRmsNorm) {
  const auto norms = load(rms_norm_family());
  std::mt19937 rng(412);
  size_t cases = 0;
  for (int C : {512, 4096, 5120}) {
    for (int M : {1, 3}) {
      for (bool with_delta : {false, true}) {
        ++cases;
        const std::vector<uint16_t> x = random_halves(size_t(M) * C, rng, 2.0f);
        const std::vector<uint16_t> delta = random_halves(x.size(), rng, 2.0f);
        const std::vector<uint16_t> weight = random_halves(size_t(C), rng, 1.5f);
        std::vector<int32_t> order(static_cast<size_t>(C));
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        std::vector<float> sum(x.size()), normalized(x.size()), want(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          const float added = half_to_float(x[i]) + (with_delta ? half_to_float(delta[i]) : 0.0f);
          sum[i] = half_to_float(float_to_half(added));
        }
        ref::rms_norm(sum.data(), to_floats(weight).data(), normalized.data(), M, C, 1e-5f);
        for (int m = 0; m < M; ++m)
          for (int j = 0; j < C; ++j)
            want[size_t(m) * C + j] = normalized[size_t(m) * C + order[size_t(j)]];
        const DeviceBuffer delta_device = upload(delta), weight_device = upload(weight),
                           order_device = upload(order);
        for (int threads : {128, 256, 512, 1024}) {
          const DeviceBuffer out = poisoned(x.size() * 2), x_copy = upload(x);
          RmsNormConfig cfg;
          cfg.block_threads = threads;
          cfg.stage_row = true;
          const RmsNormGeometry g = geometry(cfg, {M, C});
          launch_kernel(*backend_, norms.at(add_name_expression(cfg)).function,
                        launch_geometry(g.grid_x, 1, g.block_x, g.dynamic_smem_bytes), {},
                        out.raw(), x_copy.raw(), with_delta ? delta_device.raw() : uint64_t(0),
                        weight_device.raw(), order_device.raw(), C, 1e-5f);
          const std::string label = "add_rms_norm bt" + std::to_string(threads) + " C" +
                                    std::to_string(C) + " M" + std::to_string(M) +
                                    (with_delta ? " +" : "");
          check(label, relative_error(to_floats(download<uint16_t>(out, want.size())), want));
          check(label + " residual written back",
                relative_error(to_floats(download<uint16_t>(x_copy, x.size())), sum), 1e-6);
        }
      }
    }
  }
  summarize("add_rms_norm", 4, cases);
}

TEST_F(OpsGpu, ResidualAddEveryConfig) {
  const auto kernels = load(residual_add_family());
  std::mt19937 rng(407);
  size_t cases = 0;
  for (int C : {512, 4096, 8192 + 8}) {
    for (int M : {1, 3, 64}) {
      ++cases;
      const size_t count = size_t(M) * C, guard = 64;  // past the end: must stay untouched
      const std::vector<uint16_t> x = random_halves(count + guard, rng),
                                  y = random_halves(count, rng);
      std::vector<float> want(count);
      for (size_t i = 0; i < count; ++i) want[i] = half_to_float(x[i]) + half_to_float(y[i]);
      const DeviceBuffer y_device = upload(y);
      const ElementwiseShape shape{M, C};
      for (const ElementwiseConfig& cfg : space(ElementwiseOp::residual_add, device(), shape)) {
        const DeviceBuffer x_device = upload(x);
        const ElementwiseGeometry g = geometry(ElementwiseOp::residual_add, cfg, shape);
        launch_kernel(*backend_,
                      kernels.at(name_expression(ElementwiseOp::residual_add, cfg)).function,
                      launch_geometry(g.grid_x, 1, g.block_x), {}, x_device.raw(), y_device.raw(),
                      static_cast<long long>(count));
        const std::vector<uint16_t> got = download<uint16_t>(x_device, count + guard);
        EXPECT_TRUE(std::equal(got.begin() + count, got.end(), x.begin() + count))
            << to_string(cfg) << ": wrote past the end";
        check(to_string(cfg) + " C" + std::to_string(C) + " M" + std::to_string(M),
              relative_error(to_floats({got.begin(), got.begin() + count}), want));
      }
    }
  }
  summarize("residual_add", kernels.size(), cases);
}

TEST_F(OpsGpu, LogitsF32EveryConfig) {
  const auto kernels = load(logits_f32_family());
  std::mt19937 rng(408);
  size_t cases = 0;
  for (int V : {4096, 32000, 32001}) {
    for (int M : {1, 3}) {
      ++cases;
      const std::vector<uint16_t> logits = random_halves(size_t(M) * V, rng, 8.0f);
      const std::vector<float> want = to_floats(logits);
      const DeviceBuffer in = upload(logits);
      const ElementwiseShape shape{M, V};
      for (const ElementwiseConfig& cfg : space(ElementwiseOp::logits_f32, device(), shape)) {
        const ElementwiseGeometry g = geometry(ElementwiseOp::logits_f32, cfg, shape);
        const DeviceBuffer out = poisoned(want.size() * 4);
        launch_kernel(*backend_,
                      kernels.at(name_expression(ElementwiseOp::logits_f32, cfg)).function,
                      launch_geometry(g.grid_x, 1, g.block_x), {}, out.raw(), in.raw(),
                      static_cast<long long>(want.size()));
        const std::vector<float> got = download<float>(out, want.size());
        check(to_string(cfg) + " V" + std::to_string(V) + " M" + std::to_string(M),
              std::memcmp(got.data(), want.data(), want.size() * 4) == 0 ? 0.0 : 1.0, 0.0);
      }
    }
  }
  summarize("logits_f32", kernels.size(), cases);
}

TEST_F(OpsGpu, LmHeadEveryConfig) {
  const auto kernels = load(lm_head_family());
  std::mt19937 rng(409);
  size_t cases = 0;
  for (const auto& [C, V] : {std::pair{512, 4096}, std::pair{4096, 32000}, std::pair{4104, 1001}}) {
    const std::vector<uint16_t> weight =
        random_halves(size_t(V) * C, rng, 1.0f / std::sqrt(float(C)));
    const std::vector<float> weight_float = to_floats(weight);
    const DeviceBuffer weight_device = upload(weight);
    for (int M : {1, 2, 3, 4, 8, 17}) {
      ++cases;
      const std::vector<uint16_t> x = random_halves(size_t(M) * C, rng);
      std::vector<float> want(size_t(M) * V);
      ref::matmul(to_floats(x).data(), weight_float.data(), want.data(), M, C, V);
      const DeviceBuffer x_device = upload(x);
      const LmHeadShape shape{M, C, V};
      for (bool float_out : {true, false}) {
        for (const LmHeadConfig& cfg : space(device(), shape, float_out)) {
          const LmHeadGeometry g = geometry(cfg, shape);
          const DeviceBuffer out = poisoned(want.size() * 4);
          launch_kernel(*backend_, kernels.at(name_expression(cfg)).function,
                        launch_geometry(g.grid_x, g.grid_y, g.block_x), {}, out.raw(),
                        x_device.raw(), weight_device.raw(), M, C, V);
          const std::vector<float> got = float_out
                                             ? download<float>(out, want.size())
                                             : to_floats(download<uint16_t>(out, want.size()));
          check(to_string(cfg) + " C" + std::to_string(C) + " V" + std::to_string(V) + " M" +
                    std::to_string(M),
                relative_error(got, want));
        }
      }
    }
  }
  summarize("lm_head", kernels.size(), cases);
}

// Not a bound: the fastest configuration of each attention family on the 7B and 70B-like shapes,
// printed for the tuner's first guesses (decode at 4096 positions, prefill of 512 tokens).
TEST_F(OpsGpu, AttentionTimings) {
  const auto decode_kernels = load(attention_decode_family());
  const auto prefill_kernels = load(attention_prefill_family());
  std::mt19937 rng(410);
  for (const Heads& heads : {kHeadShapes[1], kHeadShapes[2]}) {
    const auto [H, Hkv, D] = heads;
    const int length = 4096;
    const Cache cache = random_cache(heads, length, length, rng);
    const DeviceBuffer keys = upload(cache.keys), values = upload(cache.values);
    const DeviceBuffer q = upload(random_halves(size_t(512) * H * D, rng));
    const DeviceBuffer out = backend_->allocate(size_t(512) * H * D * 2);
    const float scale = 1.0f / std::sqrt(float(D));

    const AttentionDecodeShape decode{H, Hkv, D, length};
    DeviceBuffer scratch = backend_->allocate(1 << 24);
    backend_->memset(scratch.raw(), 0, 1 << 24, {});
    const DeviceBuffer length_device = upload(std::vector<int32_t>{length});
    std::pair<double, std::string> best_decode{1e30, ""};
    for (const AttentionDecodeConfig& cfg : space(device(), decode)) {
      const AttentionDecodeGeometry g = geometry(cfg, decode);
      ASSERT_LE(workspace(cfg, decode).bytes, 1 << 24);
      const double us = time_us([&] {
        launch_kernel(*backend_, decode_kernels.at(name_expression(cfg)).function,
                      launch_geometry(g.grid_x, g.grid_y, g.block_x), {}, out.raw(), q.raw(),
                      keys.raw(), values.raw(), scratch.raw(),
                      scratch.raw() + workspace(cfg, decode).partials_offset, length_device.raw(),
                      H, Hkv, scale, uint64_t(0));
      });
      best_decode = std::min(best_decode, {us, to_string(cfg)});
    }
    const double cache_bytes = 2.0 * length * Hkv * D * 2;
    std::printf(
        "ops GPU timing: attention_decode %s length %d: best %s %.1f us (%.2f TB/s of K+V)\n",
        heads.name().c_str(), length, best_decode.second.c_str(), best_decode.first,
        cache_bytes / best_decode.first * 1e-6);
    EXPECT_GT(best_decode.first, 0.0);

    const AttentionPrefillShape prefill{512, 0, H, Hkv, D, 0, 0};
    std::pair<double, std::string> best_prefill{1e30, ""};
    for (const AttentionPrefillConfig& cfg : space(device(), prefill)) {
      const AttentionPrefillGeometry g = geometry(cfg, prefill);
      const double us = time_us([&] {
        launch_kernel(*backend_, prefill_kernels.at(name_expression(cfg)).function,
                      launch_geometry(g.grid_x, g.grid_y, g.block_x, g.dynamic_smem_bytes), {},
                      out.raw(), H * D, q.raw(), H * D, keys.raw(), values.raw(), 512, 0, H, Hkv,
                      scale);
      });
      best_prefill = std::min(best_prefill, {us, to_string(cfg)});
    }
    const double flops = 4.0 * H * D * 512.0 * 513.0 / 2;  // causal: QK^T and PV
    std::printf("ops GPU timing: attention_prefill %s T 512: best %s %.1f us (%.1f TFLOP/s)\n",
                heads.name().c_str(), best_prefill.second.c_str(), best_prefill.first,
                flops / best_prefill.first * 1e-6);
    EXPECT_GT(best_prefill.first, 0.0);
  }
}

}  // namespace
}  // namespace q4jit
