// Weights, activations, reference, validation and timing of one shape (shape_bench.hpp).
#include "tuner/shape_bench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "common/half.hpp"
#include "kernel_sources/dequantize_q4.hpp"
#include "model/ref/cpu_engine.hpp"

namespace q4jit {

std::vector<std::pair<int64_t, int64_t>> validation_rows(int64_t M) {
  constexpr int64_t kAll = 64, kBlock = 32;
  if (M <= kAll) return {{0, M}};
  const int64_t middle = M / 2 - kBlock / 2;
  return {{0, kBlock}, {middle, middle + kBlock}, {M - kBlock, M}};
}

GptqLinear random_linear(const MatmulShapeKey& shape, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  GptqLinear linear;
  linear.name = "tune";
  linear.K = static_cast<int>(shape.K);
  linear.N = static_cast<int>(shape.N);
  linear.group_size = static_cast<int>(shape.group_size);
  linear.G = linear.K / linear.group_size;
  linear.act_order = shape.act_order;
  std::uniform_int_distribution<uint32_t> word;
  linear.qweight.resize(size_t(linear.K / 8) * linear.N);
  for (int32_t& value : linear.qweight) value = static_cast<int32_t>(word(rng));
  linear.qzeros.resize(size_t(linear.G) * (linear.N / 8));
  for (int32_t& value : linear.qzeros) value = static_cast<int32_t>(word(rng));
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  linear.scales.resize(size_t(linear.G) * linear.N);
  const float base = 1.0f / (8.0f * std::sqrt(float(linear.K)));
  for (uint16_t& value : linear.scales) value = float_to_half(scale(rng) * base);
  if (shape.act_order) {
    std::vector<int32_t> g_idx(linear.K);
    for (int k = 0; k < linear.K; ++k) g_idx[k] = int32_t((int64_t(k) * 7919) % linear.G);
    // The stride pattern fills groups evenly only when G divides it well; fall back to blocks.
    std::vector<int> counts(linear.G, 0);
    for (int32_t g : g_idx) ++counts[g];
    if (std::any_of(counts.begin(), counts.end(), [&](int c) { return c != linear.group_size; })) {
      for (int k = 0; k < linear.K; ++k) g_idx[k] = (linear.G - 1) - k / linear.group_size;
    }
    linear.x_map = act_order_permutation(g_idx, linear.G);
  }
  return linear;
}

template <typename T>
DeviceBuffer ShapeBench::upload(const std::vector<T>& host) {
  DeviceBuffer buffer = backend_.allocate(std::max<size_t>(host.size() * sizeof(T), 16));
  if (!host.empty())
    backend_.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
  return buffer;
}

ShapeBench::ShapeBench(Backend& backend, const MatmulShapeKey& shape, int64_t max_rows,
                       int64_t scratch_bytes, int max_weight_copies)
    : backend_(backend), shape_(shape), max_rows_(std::max<int64_t>(max_rows, 1)) {
  const int64_t K = shape.K, N = shape.N;
  const GptqLinear linear = random_linear(shape, uint64_t(K) * 131 + uint64_t(N));
  // The reference for the repeating rows: x rows of [-1, 1] rounded to fp16, W dequantized.
  std::mt19937 rng(uint32_t(17 + K + N));
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<uint16_t> base(size_t(kReferenceRows) * K);
  std::vector<float> base_float(base.size());
  for (size_t i = 0; i < base.size(); ++i)
    base_float[i] = half_to_float(base[i] = float_to_half(value(rng)));
  reference_.resize(size_t(kReferenceRows) * N);
  ref::matmul(base_float.data(), dequantize_gptq(linear).data(), reference_.data(), kReferenceRows,
              int(K), int(N));

  std::vector<uint16_t> x(size_t(max_rows_) * K);
  for (int64_t row = 0; row < max_rows_; ++row) {
    std::copy_n(base.begin() + (row % kReferenceRows) * K, K, x.begin() + row * K);
  }
  x_ = upload(x);
  out_ = backend_.allocate(size_t(max_rows_ * N * 2));
  scratch_ = backend_.allocate(size_t(std::max<int64_t>(scratch_bytes, 16)));
  backend_.memset(scratch_.raw(), 0, scratch_.bytes(), {});

  const int64_t weight_bytes =
      int64_t(linear.qweight.size() + linear.qzeros.size() + 2 * linear.x_map.size()) * 4 +
      int64_t(linear.scales.size()) * 2;
  const int copies = std::min(copies_beyond_cache(backend.current_device(), weight_bytes),
                              std::max(max_weight_copies, 2));
  const std::vector<int32_t> sorted_of =
      shape.act_order ? sorted_row_of(linear.x_map) : std::vector<int32_t>{};
  for (int i = 0; i < copies; ++i) {
    copies_.push_back({upload(linear.qweight), upload(linear.scales), upload(linear.qzeros),
                       upload(linear.x_map), upload(sorted_of)});
  }
}

MatmulOperands ShapeBench::operands(int copy) const {
  const WeightCopy& w = copies_.at(size_t(copy));
  return {out_.raw(),
          x_.raw(),
          shape_.act_order ? w.x_map.raw() : 0,
          shape_.act_order ? w.sorted_of.raw() : 0,
          w.qweight.raw(),
          w.scales.raw(),
          w.qzeros.raw(),
          scratch_.raw()};
}

TrialRecord ShapeBench::validate(int64_t M, double tolerance, int64_t zeroed_bytes,
                                 const LaunchProduct& launch) {
  TrialRecord trial;
  const int64_t N = shape_.N;
  std::vector<uint16_t> got;
  double diff = 0, norm = 0;
  const auto blocks = validation_rows(std::min(M, max_rows_));
  try {
    backend_.memset(scratch_.raw(), 0, size_t(zeroed_bytes), {});
    backend_.memset(out_.raw(), 0xff, size_t(M * N * 2), {});
    launch(operands(0), {});
    for (const auto& [begin, end] : blocks) {
      got.resize(size_t((end - begin) * N));
      backend_.synchronize({});
      backend_.copy_to_host(got.data(), out_.raw() + uint64_t(begin * N * 2), got.size() * 2, {});
      backend_.synchronize({});
      for (int64_t row = begin; row < end; ++row) {
        const float* want = reference_.data() + (row % kReferenceRows) * N;
        for (int64_t n = 0; n < N; ++n) {
          const double d = double(half_to_float(got[size_t((row - begin) * N + n)])) - want[n];
          diff += d * d;
          norm += double(want[n]) * want[n];
        }
      }
    }
  } catch (const Error& error) {
    trial.status = TrialStatus::launch_failed;
    trial.detail = error.what();
    return trial;
  }
  trial.relative_error = std::sqrt(diff / std::max(norm, 1e-30));
  if (!(trial.relative_error <= tolerance)) {
    trial.status = TrialStatus::wrong_result;
    char detail[96];
    std::snprintf(detail, sizeof detail, "relative error %.2e above %.1e", trial.relative_error,
                  tolerance);
    trial.detail = detail;
  }
  return trial;
}

double ShapeBench::time(int copies, int64_t zeroed_bytes, const LaunchProduct& launch,
                        const MeasureOptions& options) {
  backend_.memset(scratch_.raw(), 0, size_t(zeroed_bytes), {});
  copies = std::clamp(copies, 1, this->copies());
  const Timing timing = time_calls(
      backend_, copies, [&](int copy, StreamView stream) { launch(operands(copy), stream); },
      options);
  return timing.median_us;
}

}  // namespace q4jit
