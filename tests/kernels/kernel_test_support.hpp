// Helpers of the tensor-core kernel tests (q4_mma_test, gemm_test): random GPTQ layers in the
// loaded layout, random fp16 data, the relative-error measure and mismatch listing, and a GPU
// fixture that skips with the reason when there is no GPU or no NVRTC. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/half.hpp"
#include "model/gptq.hpp"
#include "runtime/platform.hpp"

namespace q4jit::test {

// A random GPTQ layer as load_gptq_linear leaves it: random nibbles and zeros, positive scales
// sized so outputs stay O(1), and for act-order a random valid g_idx sorted as the loader does.
inline GptqLinear random_gptq(int K, int N, int group_size, bool act_order, std::mt19937& rng) {
  GptqLinear linear;
  linear.name = "random";
  linear.K = K;
  linear.N = N;
  linear.group_size = group_size;
  linear.G = K / group_size;
  linear.act_order = act_order;
  linear.sym = false;
  std::uniform_int_distribution<uint32_t> word;
  linear.qweight.resize(size_t(K / 8) * N);
  for (int32_t& value : linear.qweight) value = static_cast<int32_t>(word(rng));
  linear.qzeros.resize(size_t(linear.G) * (N / 8));
  for (int32_t& value : linear.qzeros) value = static_cast<int32_t>(word(rng));
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  const float unit = 1.0f / (8.0f * std::sqrt(float(K)));
  linear.scales.resize(size_t(linear.G) * N);
  for (uint16_t& value : linear.scales) value = float_to_half(scale(rng) * unit);
  if (act_order) {
    std::vector<int32_t> order(K);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int32_t> g_idx(K);
    for (int k = 0; k < K; ++k) g_idx[order[k]] = k / group_size;
    linear.x_map = act_order_permutation(g_idx, linear.G);
  }
  return linear;
}

// fp16 bits of values uniform in [-range, range].
inline std::vector<uint16_t> random_halves(size_t count, float range, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-range, range);
  std::vector<uint16_t> out(count);
  for (uint16_t& h : out) h = float_to_half(value(rng));
  return out;
}

inline std::vector<float> to_floats(const std::vector<uint16_t>& halves) {
  std::vector<float> out(halves.size());
  for (size_t i = 0; i < halves.size(); ++i) out[i] = half_to_float(halves[i]);
  return out;
}

// norm(got - want) / norm(want) over the first `count` values; NaN anywhere gives NaN.
inline double relative_error(const std::vector<uint16_t>& got, const std::vector<float>& want,
                             size_t count) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = double(half_to_float(got[i])) - want[i];
    diff += d * d;
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(diff / norm);
}

// The first few outputs off by more than 1% (+ a small absolute floor), as " [m=.. n=..] got g
// want w;".
inline std::string first_mismatches(const std::vector<uint16_t>& got,
                                    const std::vector<float>& want, size_t count, int N) {
  std::string text;
  int shown = 0;
  for (size_t i = 0; i < count && shown < 5; ++i) {
    const float value = half_to_float(got[i]);
    if (!(std::fabs(value - want[i]) <= 1e-2f * (std::fabs(want[i]) + 0.05f))) {
      char line[128];
      std::snprintf(line, sizeof line, " [m=%zu n=%zu] got %g want %g;", i / N, i % N, value,
                    want[i]);
      text += line;
      ++shown;
    }
  }
  return text;
}

// Device 0 and NVRTC, or a skip with the printed reason.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = open_gpu_backend();
    if (!opened) GTEST_SKIP() << opened.error().what();
    backend_ = std::move(opened.value());
    if (backend_->device_count() == 0) GTEST_SKIP() << "no GPU: the backend reports no device";
    backend_->select_device(0);
    auto compiler = open_compiler();
    if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
    compiler_ = std::move(compiler.value());
  }
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer buffer = backend_->allocate(std::max<size_t>(host.size() * sizeof(T), 16));
    if (!host.empty()) {
      backend_->copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
    }
    return buffer;
  }
  std::vector<uint16_t> download_halves(const DeviceBuffer& buffer, size_t count) {
    std::vector<uint16_t> out(count);
    backend_->copy_to_host(out.data(), buffer.raw(), count * 2, {});
    backend_->synchronize({});
    return out;
  }
  int jobs() const { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Compiler> compiler_;
};

}  // namespace q4jit::test
