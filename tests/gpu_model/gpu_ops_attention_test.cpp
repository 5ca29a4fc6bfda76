// GpuOps with and without attention decisions (set_attention_choice). Without GPU: nothing (the
// choice logic is tested in tests/tuner/attention_path_test.cpp). On a GPU: with an empty choice
// GpuOps takes today's rule (the first legal mma configuration, else SIMT; the decode split
// within 4 blocks per SM); with a choice it runs the decided prefill kernel of T's bucket and the
// decided split of the length's bucket, falls back to the rule for a bucket without an entry or an
// entry not legal for the shape, and every launch matches ref::attention (relative error 2e-3 per
// row) on fresh random inputs. The fused decode step (attention_decode_rope) against rope_cache
// then attention_decode: the same output bits and caches at every plan. Skips without a GPU.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "common/half.hpp"
#include "model/gpu/gpu_ops.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/decode_rope_case.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/attention_path.hpp"

namespace q4jit {
namespace {

constexpr double kTolerance = 2e-3;
constexpr int H = 8, Hkv = 4, D = 64, kMaxPositions = 2048;

class GpuOpsAttention : public test::GpuTest {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();  // device 0 and NVRTC, or a skip with the printed reason
    if (IsSkipped()) return;
    service_ = std::make_unique<KernelService>(*compiler_, nullptr);
    loader_ = std::make_unique<KernelLoader>(*backend_, *service_);
    ops_ = std::make_unique<GpuOps>(*loader_);
    ops_->set_decode_limits(H, Hkv, D, kMaxPositions);
  }
  const DeviceInfo& device() const { return backend_->current_device(); }

  // Prefill of T rows after p0 through GpuOps: the worst row's relative error.
  double prefill_error(int T, int first_position, std::mt19937& rng) {
    const int length = first_position + T, width = H * D;
    const std::vector<uint16_t> q = test::random_halves(size_t(T) * width, 2.0f, rng);
    const std::vector<uint16_t> keys = test::random_halves(size_t(length) * Hkv * D, 2.0f, rng);
    const std::vector<uint16_t> values = test::random_halves(keys.size(), 2.0f, rng);
    std::vector<float> want(q.size());
    ref::attention(test::to_floats(q).data(), test::to_floats(keys).data(),
                   test::to_floats(values).data(), want.data(), T, first_position, H, Hkv, D);
    const DeviceBuffer q_device = upload(q), k_device = upload(keys), v_device = upload(values);
    DeviceBuffer out = backend_->allocate(q.size() * 2);
    backend_->memset(out.raw(), 0xff, q.size() * 2, {});
    ops_->attention_prefill({T, first_position, H, Hkv, D, 0, 0}, out.raw(), q_device.raw(),
                            k_device.raw(), v_device.raw(), 1.0f / std::sqrt(float(D)), {});
    const std::vector<uint16_t> got = download_halves(out, q.size());
    double worst = 0;
    for (int t = 0; t < T; ++t) {
      const std::vector<uint16_t> row(got.begin() + size_t(t) * width,
                                      got.begin() + size_t(t + 1) * width);
      const std::vector<float> expected(want.begin() + size_t(t) * width,
                                        want.begin() + size_t(t + 1) * width);
      const double error = test::relative_error(row, expected, size_t(width));
      worst = std::isnan(error) ? INFINITY : std::max(worst, error);
    }
    return worst;
  }

  // One decode step at `length` positions with GpuOps's plan: the relative error.
  double decode_error(int length, std::mt19937& rng) {
    const std::vector<uint16_t> q = test::random_halves(size_t(H) * D, 2.0f, rng);
    const std::vector<uint16_t> keys = test::random_halves(size_t(length) * Hkv * D, 2.0f, rng);
    const std::vector<uint16_t> values = test::random_halves(keys.size(), 2.0f, rng);
    std::vector<float> want(q.size());
    ref::attention(test::to_floats(q).data(), test::to_floats(keys).data(),
                   test::to_floats(values).data(), want.data(), 1, length - 1, H, Hkv, D);
    const DeviceBuffer q_device = upload(q), k_device = upload(keys), v_device = upload(values);
    const DeviceBuffer length_device = upload(std::vector<int32_t>{length});
    const size_t workspace_bytes = size_t(std::max<int64_t>(ops_->decode_workspace_bytes(), 16));
    DeviceBuffer workspace = backend_->allocate(workspace_bytes);
    backend_->memset(workspace.raw(), 0, workspace_bytes, {});
    DeviceBuffer out = backend_->allocate(q.size() * 2);
    backend_->memset(out.raw(), 0xff, q.size() * 2, {});
    ops_->attention_decode(out.raw(), q_device.raw(), k_device.raw(), v_device.raw(),
                           workspace.raw(), length_device.raw(), ops_->decode_plan(length),
                           1.0f / std::sqrt(float(D)), 0, {});
    return test::relative_error(download_halves(out, q.size()), want, q.size());
  }

  // One decode step of `c` through `ops` with its plan for the length: fused
  // (attention_decode_rope), or rope_cache then attention_decode as the engine ran them before.
  // Fresh device copies of the inputs; out poisoned; the workspace's counters zero.
  test::DecodeRopeRun decode_step(GpuOps& ops, const test::DecodeRopeCase& c, bool scattered,
                                  bool fused) {
    const DeviceBuffer qkv = upload(c.qkv), keys = upload(c.keys), values = upload(c.values);
    const DeviceBuffer positions = upload(std::vector<int32_t>{c.position()});
    const DeviceBuffer length = upload(std::vector<int32_t>{c.length});
    const DeviceBuffer order = upload(c.order);
    const size_t workspace_bytes = size_t(std::max<int64_t>(ops.decode_workspace_bytes(), 16));
    DeviceBuffer workspace = backend_->allocate(workspace_bytes);
    backend_->memset(workspace.raw(), 0, workspace_bytes, {});
    DeviceBuffer out = backend_->allocate(c.want.size() * 2);
    backend_->memset(out.raw(), 0xff, c.want.size() * 2, {});
    const uint64_t q = qkv.raw(), k = q + 2 * uint64_t(c.H) * c.D;
    const uint64_t v = k + 2 * uint64_t(c.Hkv) * c.D;
    const DecodePlan plan = ops.decode_plan(c.length);
    const float scale = 1.0f / std::sqrt(float(c.D));
    const uint64_t out_position = scattered ? order.raw() : 0;
    if (fused) {
      ops.attention_decode_rope(
          out.raw(), q, keys.raw(), values.raw(), workspace.raw(), length.raw(), plan, scale,
          out_position, {k, v, positions.raw(), c.max_positions, c.theta, c.rope_scale}, {});
    } else {
      const int width = c.width();
      ops.rope_cache({1, c.H, c.Hkv, c.D, width, width, width, c.max_positions}, q, k, v,
                     keys.raw(), values.raw(), positions.raw(), c.theta, c.rope_scale, {});
      ops.attention_decode(out.raw(), q, keys.raw(), values.raw(), workspace.raw(), length.raw(),
                           plan, scale, out_position, {});
    }
    test::DecodeRopeRun run;
    run.out = download_halves(out, c.want.size());
    run.qkv = download_halves(qkv, c.qkv.size());
    run.keys = download_halves(keys, c.cache_elements());
    run.values = download_halves(values, c.cache_elements());
    return run;
  }

  // Fused against unfused through `ops` at each length, output in order and scattered.
  void expect_fused_matches(GpuOps& ops, int heads, int kv_heads, int head_dim, std::mt19937& rng) {
    for (int length : {1, 63, 64, 65, 300, 1000, kMaxPositions}) {
      const test::DecodeRopeCase c = test::decode_rope_case(heads, kv_heads, head_dim, length,
                                                            kMaxPositions, 10000.0f, 1.0f, rng);
      for (bool scattered : {false, true}) {
        std::string label = "H";  // piece by piece: GCC 12 -O3 warns (-Wrestrict) on "H" + ...
        label += std::to_string(heads) + " length " + std::to_string(length);
        if (scattered) label += " scattered";
        const test::DecodeRopeRun unfused = decode_step(ops, c, scattered, false);
        const test::DecodeRopeRun fused = decode_step(ops, c, scattered, true);
        // One-unit differences in a few halves (attention_decode_rope_test.cpp: kSameBits).
        EXPECT_LE(test::relative_difference(fused.out, unfused.out), 2e-4)
            << label << ": " << test::differing_halves(fused.out, unfused.out)
            << " output halves differ";
        EXPECT_EQ(test::differing_halves(fused.keys, unfused.keys), 0u) << label << ": keys";
        EXPECT_EQ(test::differing_halves(fused.values, unfused.values), 0u) << label;
        EXPECT_EQ(test::differing_halves(fused.qkv, c.qkv), 0u) << label << ": qkv written";
        EXPECT_FALSE(test::any_nan(fused.keys.data() + size_t(c.position()) * c.row_elements(),
                                   c.row_elements()))
            << label << ": key row not written";
        EXPECT_LE(
            test::relative_error(fused.out, scattered ? c.scattered_want : c.want, c.want.size()),
            kTolerance)
            << label << ": against ref::rope + ref::attention";
      }
    }
  }

  std::unique_ptr<KernelService> service_;
  std::unique_ptr<KernelLoader> loader_;
  std::unique_ptr<GpuOps> ops_;
};

TEST_F(GpuOpsAttention, WithoutDecisionsTodaysRule) {
  const AttentionPrefillShape shape{100, 37, H, Hkv, D, 0, 0};
  EXPECT_TRUE(ops_->attention_choice().empty());
  EXPECT_EQ(ops_->prefill_choice(shape).config(), default_prefill(device(), shape)->config());
  const auto configs = decode_split_configs(device(), {H, Hkv, D, kMaxPositions});
  for (int length : {1, 100, 1000, 2048})
    EXPECT_EQ(ops_->decode_plan(length).split,
              default_decode_split(configs, H, device().sm_count, length));
  std::mt19937 rng(731);
  EXPECT_LE(prefill_error(100, 37, rng), kTolerance);
  EXPECT_LE(decode_error(1000, rng), kTolerance);
}

TEST_F(GpuOpsAttention, RunsTheDecidedKernels) {
  const AttentionPrefillShape small{50, 37, H, Hkv, D, 0, 0};
  const std::vector<AttentionPrefillConfig> simt = space(device(), small);
  ASSERT_GE(simt.size(), 2u);
  AttentionChoice choice;
  PrefillChoice decided;  // bucket 64: a SIMT config that is not the family's first
  decided.path = AttentionPrefillPath::simt;
  decided.simt = simt[1];
  choice.prefill[64] = decided;
  PrefillChoice foreign = decided;  // bucket 128: built for D 128, not legal here
  foreign.simt.head_dim = 128;
  choice.prefill[128] = foreign;
  const auto configs = decode_split_configs(device(), {H, Hkv, D, kMaxPositions});
  const int rule = default_decode_split(configs, H, device().sm_count, 1000);
  const int other = rule == 512 ? 64 : 512;
  choice.decode_split[1024] = other;
  choice.decode_split[2048] = 96;  // no such split: the rule
  ops_->set_attention_choice(choice);

  EXPECT_EQ(ops_->prefill_choice(small).path, AttentionPrefillPath::simt);
  EXPECT_EQ(ops_->prefill_choice(small).config(), to_string(simt[1]));
  const AttentionPrefillShape wider{100, 0, H, Hkv, D, 0, 0};
  EXPECT_EQ(ops_->prefill_choice(wider).config(), default_prefill(device(), wider)->config())
      << "an entry not legal for the shape keeps the rule";
  const AttentionPrefillShape other_bucket{300, 0, H, Hkv, D, 0, 0};
  EXPECT_EQ(ops_->prefill_choice(other_bucket).config(),
            default_prefill(device(), other_bucket)->config());
  EXPECT_EQ(ops_->decode_plan(1000).split, other);
  const int needed = (1000 + other - 1) / other, most = (kMaxPositions + other - 1) / other;
  EXPECT_EQ(ops_->decode_plan(1000).splits,
            std::max(needed, std::min(int(std::bit_ceil(unsigned(needed))), most)))
      << "the count of splits rounds up to a power of two within the workspace";
  EXPECT_EQ(ops_->decode_plan(1500).split,
            default_decode_split(configs, H, device().sm_count, 1500));

  std::mt19937 rng(732);
  EXPECT_LE(prefill_error(50, 37, rng), kTolerance) << "decided SIMT " << to_string(simt[1]);
  EXPECT_LE(prefill_error(100, 0, rng), kTolerance);
  EXPECT_LE(decode_error(1000, rng), kTolerance) << "decided split " << other;
  EXPECT_LE(decode_error(1500, rng), kTolerance);
}

// The fused decode step (RoPE and the cache write in the attention launch) gives the bits of
// rope_cache then attention_decode through GpuOps, with GpuOps's plan at each length, for the
// fixture's heads and Llama-7B's (a GpuOps of its own), with and without decisions.
TEST_F(GpuOpsAttention, FusedRopeDecodeMatchesRopeCacheThenDecode) {
  std::mt19937 rng(733);
  expect_fused_matches(*ops_, H, Hkv, D, rng);
  GpuOps llama(*loader_);
  llama.set_decode_limits(32, 32, 128, kMaxPositions);
  expect_fused_matches(llama, 32, 32, 128, rng);

  AttentionChoice choice;  // a decided split that is not the rule's
  const auto configs = decode_split_configs(device(), {H, Hkv, D, kMaxPositions});
  const int rule = default_decode_split(configs, H, device().sm_count, 300);
  choice.decode_split[512] = rule == 64 ? 128 : 64;
  ops_->set_attention_choice(choice);
  ASSERT_EQ(ops_->decode_plan(300).split, choice.decode_split[512]);
  expect_fused_matches(*ops_, H, Hkv, D, rng);

  EXPECT_THROW(ops_->attention_decode_rope(0, 0, 0, 0, 0, 0, ops_->decode_plan(10), 1.0f, 0,
                                           AttentionDecodeRope{}, {}),
               Error)
      << "no new token: an error, not a launch that reads an unwritten row";
}

}  // namespace
}  // namespace q4jit
