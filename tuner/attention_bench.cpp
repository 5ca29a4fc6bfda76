// Inputs, reference, validation and timing of attention candidates (attention_bench.hpp).
#include "tuner/attention_bench.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "common/half.hpp"
#include "model/ref/cpu_engine.hpp"

namespace q4jit {

namespace {

constexpr uint16_t kHalfNaN = 0xffff;
// Cache rows past the sequence, NaN: a kernel reading past its length poisons its output.
constexpr int64_t kPoisonRows = 64;
constexpr float kInputRange = 2.0f;

std::vector<uint16_t> random_halves(size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-kInputRange, kInputRange);
  std::vector<uint16_t> out(count);
  for (uint16_t& h : out) h = float_to_half(value(rng));
  return out;
}

std::vector<float> to_floats(const std::vector<uint16_t>& halves, size_t count) {
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = half_to_float(halves[i]);
  return out;
}

bool is_nan_half(uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}

// norm(got - want) / norm(want) over `count` values; NaN anywhere gives NaN.
double relative_error(const uint16_t* got, const float* want, size_t count) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = double(half_to_float(got[i])) - want[i];
    difference += d * d;
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(difference / std::max(norm, 1e-30));
}

template <typename T>
DeviceBuffer upload(Backend& backend, const std::vector<T>& host) {
  DeviceBuffer buffer = backend.allocate(std::max<size_t>(host.size() * sizeof(T), 16));
  if (!host.empty()) backend.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
  return buffer;
}

std::vector<uint16_t> download_halves(Backend& backend, const DeviceBuffer& buffer, size_t count) {
  std::vector<uint16_t> out(count);
  backend.copy_to_host(out.data(), buffer.raw(), count * 2, {});
  backend.synchronize({});
  return out;
}

// Copies 1 .. copies-1 of the four buffers of copy 0 (q, keys, values, out), on the device.
void add_copies(Backend& backend, std::vector<DeviceBuffer>& buffers, int copies) {
  for (int copy = 1; copy < copies; ++copy) {
    for (int i = 0; i < 4; ++i) {
      DeviceBuffer buffer = backend.allocate(buffers[i].bytes());
      backend.copy_on_device(buffer.raw(), buffers[i].raw(), buffers[i].bytes(), {});
      buffers.push_back(std::move(buffer));
    }
  }
  backend.synchronize({});
}

int copies_for(const DeviceInfo& device, int64_t bytes, int max_copies) {
  return std::clamp(copies_beyond_cache(device, bytes), 1, std::max(max_copies, 1));
}

// One probe sizes the graphs, then one measured repetition.
double median_us(Backend& backend, int copies,
                 const std::function<void(int copy, StreamView stream)>& enqueue) {
  const Timing probe = time_calls(backend, copies, enqueue, probe_measure_options());
  return time_calls(backend, copies, enqueue, measure_options_for(probe.median_us)).median_us;
}

TrialRecord verdict(const std::string& config, double error, const std::string& detail) {
  TrialRecord trial;
  trial.config = config;
  trial.relative_error = error;
  trial.status = detail.empty() ? TrialStatus::ok : TrialStatus::wrong_result;
  trial.detail = detail;
  return trial;
}

std::string scientific(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", value);
  return text;
}

}  // namespace

std::vector<int64_t> reference_rows(int64_t T, int64_t first_position,
                                    const AttentionGeometry& geometry) {
  std::vector<int64_t> rows;
  const int64_t positions = T * (first_position + 1) + T * (T - 1) / 2;  // summed over rows
  if (positions * geometry.heads * geometry.head_dim <= kFullReferenceWork) {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
    return rows;
  }
  for (int64_t t = 0; t < 4; ++t) {
    rows.push_back(t);
    rows.push_back(T - 1 - t);
  }
  for (int64_t tile = 16; tile <= 128; tile *= 2) {
    rows.push_back(tile - 1);
    rows.push_back(tile);
  }
  for (int64_t i = 0; i < 8; ++i) rows.push_back((2 * i + 1) * T / 16);
  std::erase_if(rows, [&](int64_t t) { return t < 0 || t >= T; });
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

PrefillBench::PrefillBench(Backend& backend, const AttentionGeometry& geometry, int64_t T,
                           int64_t first_position, int max_copies)
    : backend_(backend) {
  const int64_t H = geometry.heads, Hkv = geometry.kv_heads, D = geometry.head_dim;
  const int64_t width = H * D, q_stride = (H + 2 * Hkv) * D;  // q inside a fused qkv row
  shape_ = {T, first_position, H, Hkv, D, q_stride, width};
  std::mt19937 rng(uint32_t(T * 7919 + first_position * 131 + H * 17 + Hkv * 5 + D));
  const int64_t filled = first_position + T;
  const std::vector<uint16_t> q = random_halves(size_t(T * q_stride), rng);
  std::vector<uint16_t> keys = random_halves(size_t(filled * Hkv * D), rng);
  std::vector<uint16_t> values = random_halves(size_t(filled * Hkv * D), rng);
  const std::vector<float> keys_float = to_floats(keys, keys.size());
  const std::vector<float> values_float = to_floats(values, values.size());

  rows_ = reference_rows(T, first_position, geometry);
  reference_.assign(rows_.size() * size_t(width), 0.0f);
  std::vector<float> q_packed(rows_.size() * size_t(width));
  for (size_t r = 0; r < rows_.size(); ++r) {
    for (int64_t i = 0; i < width; ++i)
      q_packed[r * width + i] = half_to_float(q[size_t(rows_[r] * q_stride + i)]);
  }
  if (int64_t(rows_.size()) == T) {
    ref::attention(q_packed.data(), keys_float.data(), values_float.data(), reference_.data(),
                   int(T), int(first_position), int(H), int(Hkv), int(D));
  } else {
    for (size_t r = 0; r < rows_.size(); ++r) {
      ref::attention(q_packed.data() + r * width, keys_float.data(), values_float.data(),
                     reference_.data() + r * width, 1, int(first_position + rows_[r]), int(H),
                     int(Hkv), int(D));
    }
  }

  keys.resize(size_t((filled + kPoisonRows) * Hkv * D), kHalfNaN);
  values.resize(keys.size(), kHalfNaN);
  buffers_.push_back(upload(backend, q));
  buffers_.push_back(upload(backend, keys));
  buffers_.push_back(upload(backend, values));
  buffers_.push_back(backend.allocate(size_t((T + 1) * width * 2)));  // one row past the end
  int64_t bytes = 0;
  for (const DeviceBuffer& buffer : buffers_) bytes += int64_t(buffer.bytes());
  // Prefill-sized calls are compute-bound: two copies, as the matmul tuner does from 64 rows.
  const int copies = T >= 64 ? std::min(2, std::max(max_copies, 1))
                             : copies_for(backend.current_device(), bytes, max_copies);
  add_copies(backend, buffers_, copies);
}

TrialRecord PrefillBench::validate(const PrefillChoice& choice, const Function& function) {
  const int64_t T = shape_.tokens, width = shape_.heads * shape_.head_dim;
  const size_t count = size_t((T + 1) * width);
  backend_.memset(buffers_[3].raw(), 0xff, count * 2, {});
  try {
    launch_attention_prefill(
        backend_, function, choice, shape_,
        {buffers_[3].raw(), buffers_[0].raw(), buffers_[1].raw(), buffers_[2].raw()},
        1.0f / std::sqrt(float(shape_.head_dim)), {});
    backend_.synchronize({});
  } catch (const Error& error) {
    TrialRecord trial = verdict(choice.config(), 0, error.what());
    trial.status = TrialStatus::launch_failed;
    return trial;
  }
  const std::vector<uint16_t> got = download_halves(backend_, buffers_[3], count);
  for (int64_t i = T * width; i < int64_t(count); ++i) {
    if (got[size_t(i)] != kHalfNaN) return verdict(choice.config(), 0, "wrote past row T");
  }
  for (int64_t i = 0; i < T * width; ++i) {
    if (is_nan_half(got[size_t(i)]))
      return verdict(choice.config(), NAN, "row " + std::to_string(i / width) + " not finite");
  }
  double worst = 0;
  for (size_t r = 0; r < rows_.size(); ++r) {
    const double error =
        relative_error(got.data() + rows_[r] * width, reference_.data() + r * width, size_t(width));
    if (!(error <= kAttentionTolerance)) {
      return verdict(choice.config(), error,
                     "row " + std::to_string(rows_[r]) + ": relative error " + scientific(error) +
                         " above " + scientific(kAttentionTolerance));
    }
    worst = std::max(worst, error);
  }
  return verdict(choice.config(), worst, "");
}

double PrefillBench::time(const PrefillChoice& choice, const Function& function) {
  const float scale = 1.0f / std::sqrt(float(shape_.head_dim));
  return median_us(backend_, int(buffers_.size() / 4), [&](int copy, StreamView stream) {
    const DeviceBuffer* b = &buffers_[size_t(copy) * 4];
    launch_attention_prefill(backend_, function, choice, shape_,
                             {b[3].raw(), b[0].raw(), b[1].raw(), b[2].raw()}, scale, stream);
  });
}

DecodeBench::DecodeBench(Backend& backend, const AttentionGeometry& geometry, int64_t length,
                         const std::map<int, AttentionDecodeConfig>& configs, int max_copies)
    : backend_(backend) {
  const int64_t H = geometry.heads, Hkv = geometry.kv_heads, D = geometry.head_dim;
  shape_ = {H, Hkv, D, length};
  std::mt19937 rng(uint32_t(length * 7907 + H * 17 + Hkv * 5 + D));
  const std::vector<uint16_t> q = random_halves(size_t(H * D), rng);
  std::vector<uint16_t> keys = random_halves(size_t(length * Hkv * D), rng);
  std::vector<uint16_t> values = random_halves(size_t(length * Hkv * D), rng);
  reference_.assign(size_t(H * D), 0.0f);
  ref::attention(to_floats(q, q.size()).data(), to_floats(keys, keys.size()).data(),
                 to_floats(values, values.size()).data(), reference_.data(), 1, int(length - 1),
                 int(H), int(Hkv), int(D));

  keys.resize(size_t((length + kPoisonRows) * Hkv * D), kHalfNaN);
  values.resize(keys.size(), kHalfNaN);
  buffers_.push_back(upload(backend, q));
  buffers_.push_back(upload(backend, keys));
  buffers_.push_back(upload(backend, values));
  buffers_.push_back(backend.allocate(size_t(H * D * 2)));
  int64_t workspace_bytes = 16;
  for (const auto& [split, cfg] : configs) {
    const AttentionDecodeWorkspace layout = workspace(cfg, shape_);
    workspace_bytes = std::max(workspace_bytes, layout.bytes);
    counters_bytes_ = std::max(counters_bytes_, layout.partials_offset);
  }
  // Counters zero, partials poisoned: a launch must write every partial it combines.
  workspace_ = backend.allocate(size_t(workspace_bytes));
  backend.memset(workspace_.raw(), 0xff, size_t(workspace_bytes), {});
  backend.memset(workspace_.raw(), 0, size_t(counters_bytes_), {});
  length_ = upload(backend, std::vector<int32_t>{int32_t(length)});
  const int64_t bytes = 2 * length * Hkv * D * 2 + 2 * H * D * 2;
  add_copies(backend, buffers_, copies_for(backend.current_device(), bytes, max_copies));
}

void DecodeBench::launch(const AttentionDecodeConfig& cfg, const Function& function, int copy,
                         StreamView stream) {
  const DeviceBuffer* b = &buffers_[size_t(copy) * 4];
  const int splits = int((shape_.length + cfg.split - 1) / cfg.split);
  launch_attention_decode(
      backend_, function, cfg, shape_, splits, {b[3].raw(), b[0].raw(), b[1].raw(), b[2].raw()},
      {workspace_.raw(), length_.raw(), 0}, 1.0f / std::sqrt(float(shape_.head_dim)), stream);
}

TrialRecord DecodeBench::validate(const AttentionDecodeConfig& cfg, const Function& function) {
  const int64_t D = shape_.head_dim, count = shape_.heads * D;
  double worst = 0;
  for (int run = 0; run < 2; ++run) {
    backend_.memset(buffers_[3].raw(), 0xff, size_t(count * 2), {});
    try {
      launch(cfg, function, 0, {});
      backend_.synchronize({});
    } catch (const Error& error) {
      TrialRecord trial = verdict(to_string(cfg), 0, error.what());
      trial.status = TrialStatus::launch_failed;
      return trial;
    }
    const std::vector<uint16_t> got = download_halves(backend_, buffers_[3], size_t(count));
    for (int64_t h = 0; h < shape_.heads; ++h) {
      const double error = relative_error(got.data() + h * D, reference_.data() + h * D, size_t(D));
      if (!(error <= kAttentionTolerance)) {
        return verdict(to_string(cfg), error,
                       "launch " + std::to_string(run + 1) + ", head " + std::to_string(h) +
                           ": relative error " + scientific(error) + " above " +
                           scientific(kAttentionTolerance));
      }
      worst = std::max(worst, error);
    }
  }
  std::vector<uint8_t> counters(static_cast<size_t>(counters_bytes_));
  backend_.copy_to_host(counters.data(), workspace_.raw(), counters.size(), {});
  backend_.synchronize({});
  if (std::any_of(counters.begin(), counters.end(), [](uint8_t byte) { return byte != 0; }))
    return verdict(to_string(cfg), worst, "left its workspace counters non-zero");
  return verdict(to_string(cfg), worst, "");
}

double DecodeBench::time(const AttentionDecodeConfig& cfg, const Function& function) {
  return median_us(backend_, int(buffers_.size() / 4),
                   [&](int copy, StreamView stream) { launch(cfg, function, copy, stream); });
}

}  // namespace q4jit
