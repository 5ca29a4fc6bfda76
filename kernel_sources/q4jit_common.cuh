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
