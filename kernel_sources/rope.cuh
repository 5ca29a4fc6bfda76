// The rotate-half RoPE of one dim pair (i, i + D/2) in fp32, shared by rope_cache.cu and the fused
// decode attention (attention_decode_rope_kernel in attention_decode.cu), so that a query or key
// rotated by either kernel rounds to the same fp16 bits. The CPU reference is ref::rope.
// Not here: which rows are rotated or where they go (the kernels).
#pragma once

#include "portable.cuh"

namespace q4jit_rope {

// Pair i's angle at `position`: inv_freq = theta^(-2i/D) / scale (linear scaling) in fp32 as
// Hugging Face computes it; precise powf and sincosf (positions reach thousands of radians, where
// __sinf is wrong).
__device__ __forceinline__ void angle(int pair, int head_dim, float position, float theta,
                                      float scale, float* sin_angle, float* cos_angle) {
  const float inv_freq = 1.0f / powf(theta, float(2 * pair) / float(head_dim)) / scale;
  sincosf(position * inv_freq, sin_angle, cos_angle);
}

// The rotated pair's fp32 arithmetic is spelled out with rounded intrinsics: from plain
// `a * c - b * s` each kernel's compile picks its own fused multiply-adds (NVVM and ptxas contract
// by context), and the fused decode must produce rope_cache's bits. The forms are the PTX NVVM
// emitted for rope_cache before: two products and their difference, one fused multiply-add.
// Dim i of the rotated pair, from a = x[i] and b = x[i + D/2].
__device__ __forceinline__ __half rotated_first(float a, float b, float cos_angle,
                                                float sin_angle) {
  return __float2half(__fsub_rn(__fmul_rn(cos_angle, a), __fmul_rn(sin_angle, b)));
}

// Dim i + D/2 of the rotated pair.
__device__ __forceinline__ __half rotated_second(float a, float b, float cos_angle,
                                                 float sin_angle) {
  return __float2half(__fmaf_rn(sin_angle, a, __fmul_rn(cos_angle, b)));
}

}  // namespace q4jit_rope
