// Device helpers of the attention kernels (attention_decode.cu, attention_prefill.cu): a warp
// maximum and 8 fp16 values loaded as one 16-byte access and widened to fp32. No kernels here.
#pragma once

#include "portable.cuh"

namespace q4jit_attention {

// -infinity: the start of a running maximum and the score of a masked key (NVRTC has no math.h
// and so no INFINITY).
__device__ __forceinline__ float negative_infinity() {
  return __int_as_float(0xff800000);
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// out[0..8) = source[0..8); source 16-byte aligned.
__device__ __forceinline__ void load8(float* out, const __half* source) {
  const uint4 raw = *reinterpret_cast<const uint4*>(source);
  const __half2* pairs = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 pair = __half22float2(pairs[i]);
    out[2 * i] = pair.x;
    out[2 * i + 1] = pair.y;
  }
}

}  // namespace q4jit_attention
