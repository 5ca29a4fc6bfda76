// One decode step for the tests of the fused decode attention (attention_decode_rope_test,
// gpu_ops_attention_test): the new token's qkv row before RoPE at position length - 1, a layer's
// caches as earlier steps left them, and the fp32 reference (ref::rope, then ref::attention).
// Also what a run returns and how two runs' fp16 outputs compare. Header-only; no GPU here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "model/ref/cpu_engine.hpp"
#include "tests/kernels/kernel_test_support.hpp"

namespace q4jit::test {

inline constexpr uint16_t kPoisonHalf = 0xffff;  // NaN

struct DecodeRopeCase {
  int H = 0, Hkv = 0, D = 0;
  int length = 0;         // positions attended; the new token sits at length - 1
  int rows = 0;           // rows of the caches allocated
  int max_positions = 0;  // P_max passed to the kernels (rows unless a test says otherwise)
  float theta = 10000.0f, rope_scale = 1.0f;
  std::vector<uint16_t> qkv;           // [(H + 2 Hkv) D]: q, k, v of the new token before RoPE
  std::vector<uint16_t> keys, values;  // [rows, Hkv, D]: random below length - 1, NaN from there
  std::vector<int32_t> order;          // a random permutation of [H D], an out_position
  std::vector<float> want;             // [H, D], the reference in plain order
  std::vector<float> scattered_want;   // want[i] at order[i]

  int position() const { return length - 1; }
  int width() const { return (H + 2 * Hkv) * D; }
  size_t row_elements() const { return size_t(Hkv) * D; }
  size_t cache_elements() const { return size_t(rows) * row_elements(); }
};

// Inputs uniform in [-2, 2]; rows of the caches from `length - 1` on are NaN, so a step that does
// not write its row, or reads past it, poisons its output.
inline DecodeRopeCase decode_rope_case(int H, int Hkv, int D, int length, int rows, float theta,
                                       float rope_scale, std::mt19937& rng) {
  DecodeRopeCase c;
  c.H = H, c.Hkv = Hkv, c.D = D, c.length = length, c.rows = rows, c.max_positions = rows;
  c.theta = theta, c.rope_scale = rope_scale;
  c.qkv = random_halves(size_t(c.width()), 2.0f, rng);
  c.keys = random_halves(size_t(length - 1) * c.row_elements(), 2.0f, rng);
  c.values = random_halves(c.keys.size(), 2.0f, rng);

  const std::vector<float> row = to_floats(c.qkv);
  std::vector<float> q(row.begin(), row.begin() + H * D);
  std::vector<float> k(row.begin() + H * D, row.begin() + (H + Hkv) * D);
  const int position = c.position();
  ref::rope(q.data(), &position, 1, H, D, theta, rope_scale);
  ref::rope(k.data(), &position, 1, Hkv, D, theta, rope_scale);
  std::vector<float> keys = to_floats(c.keys), values = to_floats(c.values);
  keys.insert(keys.end(), k.begin(), k.end());
  values.insert(values.end(), row.begin() + (H + Hkv) * D, row.end());
  c.want.assign(size_t(H) * D, 0.0f);
  ref::attention(q.data(), keys.data(), values.data(), c.want.data(), 1, position, H, Hkv, D);

  c.keys.resize(c.cache_elements(), kPoisonHalf);
  c.values.resize(c.cache_elements(), kPoisonHalf);
  c.order.resize(c.want.size());
  std::iota(c.order.begin(), c.order.end(), 0);
  std::shuffle(c.order.begin(), c.order.end(), rng);
  c.scattered_want.resize(c.want.size());
  for (size_t i = 0; i < c.want.size(); ++i) c.scattered_want[size_t(c.order[i])] = c.want[i];
  return c;
}

// What one decode step left on the device.
struct DecodeRopeRun {
  std::vector<uint16_t> out;           // [H D]
  std::vector<uint16_t> qkv;           // the qkv row after the step
  std::vector<uint16_t> keys, values;  // the whole caches
  bool counters_zero = false;          // the workspace's counters after the step
};

// Elements whose bits differ.
inline size_t differing_halves(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) count += a[i] != b[i];
  return count;
}

// norm(got - want) / norm(want) of two fp16 vectors; NaN anywhere gives NaN.
inline double relative_difference(const std::vector<uint16_t>& got,
                                  const std::vector<uint16_t>& want) {
  return relative_error(got, to_floats(want), want.size());
}

// Whether any of `count` halves from `first` is NaN.
inline bool any_nan(const uint16_t* first, size_t count) {
  return std::any_of(first, first + count,
                     [](uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0; });
}

}  // namespace q4jit::test
