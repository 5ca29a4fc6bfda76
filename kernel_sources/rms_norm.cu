// rms_norm: Llama's RMSNorm on fp16 rows, y = half(x * rsqrt(mean(x^2) + eps)) * weight.
// The host descriptor (tuning parameters, legality, geometry) is rms_norm.hpp; the CPU reference
// is model/ref. This file is embedded into the binary and compiled by NVRTC at run time; with the
// template defaults it also builds standalone under nvcc for ncu.
//
// Layout:      x [M, hidden] fp16 row-major | weight [hidden] fp16 | out [M, hidden] fp16
// Geometry:    grid (M), block (kBlockThreads), dynamic shared memory hidden * 2 bytes when
//              kStageRow, else 0 (hidden 32768 stages 64 KB: past the 48 KB default limit).
// Parameters:  kBlockThreads 64..1024 (whole warps), kVectorWidth 1, 2, 4, 8 (hidden must be a
//              multiple of it), kStageRow 0/1 (keep the row in shared memory between the two
//              passes instead of reading it from global memory twice).
// Parameters change speed, never results beyond fp32 reduction order (the sum of squares is
// reduced per thread then per block, so block size changes the order).
#include "portable.cuh"

#include "q4jit_common.cuh"

namespace rms_norm_detail {

// Llama's RMSNorm rounding (q4jit_common.cuh, shared with the fused projections).
__device__ __forceinline__ __half normalize(__half x, __half weight, float inverse_rms) {
  return q4jit_device::rms_normalize(x, weight, inverse_rms);
}

template <int kVectorWidth>
__device__ __forceinline__ void add_squares(float& sum,
                                            const q4jit_device::HalfVector<kVectorWidth>& v) {
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j) {
    const float value = __half2float(v.value[j]);
    sum += value * value;
  }
}

template <int kVectorWidth>
__device__ __forceinline__ q4jit_device::HalfVector<kVectorWidth> normalize(
    const q4jit_device::HalfVector<kVectorWidth>& x,
    const q4jit_device::HalfVector<kVectorWidth>& weight, float inverse_rms) {
  q4jit_device::HalfVector<kVectorWidth> result;
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j)
    result.value[j] = normalize(x.value[j], weight.value[j], inverse_rms);
  return result;
}

}  // namespace rms_norm_detail

template <int kBlockThreads = 256, int kVectorWidth = 8, bool kStageRow = false>
__global__ void __launch_bounds__(kBlockThreads)
    rms_norm_kernel(__half* out, const __half* x, const __half* weight, int hidden, float eps) {
  q4jit_device::grid_dependency_begin();
  static_assert(kBlockThreads % 32 == 0 && kBlockThreads >= 64 && kBlockThreads <= 1024,
                "kBlockThreads: whole warps, 64 to 1024");
  static_assert(kVectorWidth == 1 || kVectorWidth == 2 || kVectorWidth == 4 || kVectorWidth == 8,
                "kVectorWidth: 1, 2, 4 or 8");
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  extern __shared__ __align__(16) unsigned char staged_bytes[];
  Vector* staged = reinterpret_cast<Vector*>(staged_bytes);

  const size_t row = blockIdx.x;
  const Vector* x_row = reinterpret_cast<const Vector*>(x + row * hidden);
  const Vector* weight_vectors = reinterpret_cast<const Vector*>(weight);
  Vector* out_row = reinterpret_cast<Vector*>(out + row * hidden);
  const int vectors = hidden / kVectorWidth;

  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < vectors; i += kBlockThreads) {
    const Vector v = x_row[i];
    if (kStageRow) staged[i] = v;
    rms_norm_detail::add_squares(sum_squares, v);
  }
  const float inverse_rms =
      rsqrtf(q4jit_device::block_sum<kBlockThreads>(sum_squares) / hidden + eps);

  for (int i = threadIdx.x; i < vectors; i += kBlockThreads) {
    const Vector v = kStageRow ? staged[i] : x_row[i];
    out_row[i] = rms_norm_detail::normalize(v, weight_vectors[i], inverse_rms);
  }
}

// add_rms_norm_kernel: the residual add and the next RMSNorm in one launch, with the normalized
// row written in the order the next projection's weights are sorted in (act-order):
//   x += delta (skipped when delta is null; x is written back, rounded to fp16 as residual_add
//   does), out[j] = half(half(x[order[j]] * rsqrt(mean(x^2) + eps)) * weight[order[j]]), with
//   order[j] = j when order is null. Same arithmetic as residual_add then rms_norm_kernel.
// Geometry:    as rms_norm_kernel with kStageRow: grid (M), dynamic shared memory hidden * 2 bytes
//              (the row after the add; the gathered pass reads it in any order).
template <int kBlockThreads = 256, int kVectorWidth = 8>
__global__ void __launch_bounds__(kBlockThreads)
    add_rms_norm_kernel(__half* out, __half* x, const __half* delta, const __half* weight,
                        const int* order, int hidden, float eps) {
  q4jit_device::grid_dependency_begin();
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  extern __shared__ __align__(16) unsigned char staged_bytes[];
  Vector* staged = reinterpret_cast<Vector*>(staged_bytes);
  const __half* staged_values = reinterpret_cast<const __half*>(staged_bytes);

  const size_t row = blockIdx.x;
  Vector* x_row = reinterpret_cast<Vector*>(x + row * hidden);
  const Vector* delta_row = reinterpret_cast<const Vector*>(delta + row * hidden);
  const int vectors = hidden / kVectorWidth;
  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < vectors; i += kBlockThreads) {
    Vector v = x_row[i];
    if (delta != nullptr) {
      const Vector d = delta_row[i];
#pragma unroll
      for (int j = 0; j < kVectorWidth; ++j)
        v.value[j] = q4jit_device::add_rounded(v.value[j], d.value[j]);
      x_row[i] = v;
    }
    staged[i] = v;
    rms_norm_detail::add_squares(sum_squares, v);
  }
  const float inverse_rms =
      rsqrtf(q4jit_device::block_sum<kBlockThreads>(sum_squares) / hidden + eps);
  __syncthreads();  // every thread's staged values, for the gathered reads below

  __half* out_row = out + row * hidden;
  if (order == nullptr) {
    const Vector* weight_vectors = reinterpret_cast<const Vector*>(weight);
    for (int i = threadIdx.x; i < vectors; i += kBlockThreads) {
      reinterpret_cast<Vector*>(out_row)[i] =
          rms_norm_detail::normalize(staged[i], weight_vectors[i], inverse_rms);
    }
    return;
  }
  // Gathered: kUnroll outputs per thread with all their loads issued first (order, then weight
  // at the gathered index): one dependent pair of load latencies per kUnroll outputs.
  constexpr int kUnroll = 8;
  for (int base = threadIdx.x; base < hidden; base += kBlockThreads * kUnroll) {
    int source[kUnroll];
    __half w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kBlockThreads;
      source[u] = i < hidden ? order[i] : 0;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) w[u] = weight[source[u]];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kBlockThreads;
      if (i >= hidden) break;
      out_row[i] = rms_norm_detail::normalize(staged_values[source[u]], w[u], inverse_rms);
    }
  }
}
