// Device helpers shared by q4jit's kernel templates: vector loads of fp16 and block reductions.
// Embedded into the binary with the templates (kernel_sources/CMakeLists.txt) and handed to NVRTC
// as a named header, so `#include "q4jit_common.cuh"` resolves without a source tree. It holds no
// kernels; each family's kernels live in <family>.cu.
#pragma once

#include "portable.cuh"

namespace q4jit_device {

// kWidth consecutive halves loaded or stored as one access; the address must be aligned to
// 2 * kWidth bytes (callers guarantee it through their legality rules).
template <int kWidth>
struct alignas(2 * kWidth) HalfVector {
  __half value[kWidth];
};

// The elementwise roundings of Llama's layers, shared by their own kernels and the projections
// that fuse them into their input or output, so fused and unfused launches agree to the bit.
// The residual add: half(a + b).
__device__ __forceinline__ __half add_rounded(__half a, __half b) {
  return __float2half(__half2float(a) + __half2float(b));
}
// RMSNorm of one value: half(half(x * inverse_rms) * weight).
__device__ __forceinline__ __half rms_normalize(__half x, __half weight, float inverse_rms) {
  const __half normalized = __float2half(__half2float(x) * inverse_rms);
  return __float2half(__half2float(normalized) * __half2float(weight));
}
// The MLP's gate: half(silu(gate) * up). expf, not __expf: a large negative gate must give 0,
// not NaN, and stay within 1 ulp.
__device__ __forceinline__ __half silu_mul_value(__half gate, __half up) {
  const float value = __half2float(gate);
  return __float2half(value / (1.0f + expf(-value)) * __half2float(up));
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Sum of `value` over the block's kBlockThreads threads, returned to every thread.
// kBlockThreads must be a multiple of 32 and at most 1024.
template <int kBlockThreads>
__device__ __forceinline__ float block_sum(float value) {
  static_assert(kBlockThreads % 32 == 0 && kBlockThreads <= 1024, "block of whole warps");
  constexpr int kWarps = kBlockThreads / 32;
  __shared__ float warp_totals[kWarps];
  value = warp_sum(value);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_totals[warp] = value;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) total += warp_totals[i];
  return total;
}

}  // namespace q4jit_device
