// GpuOps with and without attention decisions (set_attention_choice). Without GPU: nothing (the
// choice logic is tested in tests/tuner/attention_path_test.cpp). On a GPU: with an empty choice
// GpuOps takes today's rule (the first legal mma configuration, else SIMT; the decode split
// within 4 blocks per SM); with a choice it runs the decided prefill kernel of T's bucket and the
// decided split of the length's bucket, falls back to the rule for a bucket without an entry or an
// entry not legal for the shape, and every launch matches ref::attention (relative error 2e-3 per
// row) on fresh random inputs. Skips without a GPU.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "common/half.hpp"
#include "model/gpu/gpu_ops.hpp"
#include "model/ref/cpu_engine.hpp"
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

}  // namespace
}  // namespace q4jit
