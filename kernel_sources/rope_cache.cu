// rope_cache: rotary position embedding (rotate-half) on q and k, fused with the KV-cache write.
// q is rotated in place; k is rotated on the way into the key cache and v copied into the value
// cache, so keys are never written back to the qkv buffer. The host descriptor is rope_cache.hpp;
// the CPU reference is ref::rope. Not here: attention (attention_decode.cu, attention_prefill.cu).
//
// Layout:      q [T, H, D] with q_stride elements between tokens (in place)
//              k, v [T, Hkv, D] with k_stride, v_stride between tokens (read only), so the three
//              may be views of one fused qkv output [T, (H + 2 Hkv) D]
//              positions [T] int32; key_cache, value_cache: one layer's [P_max, Hkv, D] fp16
//              (the KV cache layout, see rope_cache.hpp), written at rows positions[t].
// Rotation:    dim i pairs with i + D/2; inv_freq[i] = theta^(-2i/D) / scale (linear scaling),
//              angle = position * inv_freq in fp32 as Hugging Face computes it; precise powf and
//              sincosf (rope.cuh, shared with the fused decode attention: the same fp16 bits).
// Geometry:    grid (T, blocks per token), block (kBlockThreads); a token's items (rotation
//              chunks of q and k, copy chunks of v) are strided over its blocks' threads, so any
//              grid_y >= 1 covers them. A position outside [0, P_max) still rotates q but writes
//              nothing to the cache (never out of bounds).
// Parameters:  kBlockThreads 64..256, kVectorWidth 1, 2, 4, 8 rotation pairs per access
//              (D/2 and the strides % width == 0). They never change results.
#include "portable.cuh"

#include "q4jit_common.cuh"
#include "rope.cuh"

// Rotates kVectorWidth pairs starting at dim `pair` of `head` ([D]) into `out` ([D]).
template <int kVectorWidth>
__device__ __forceinline__ void rotate(__half* out, const __half* head, int pair, int head_dim,
                                       float position, float theta, float scale) {
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const int half = head_dim / 2;
  const Vector first = *reinterpret_cast<const Vector*>(head + pair);
  const Vector second = *reinterpret_cast<const Vector*>(head + pair + half);
  Vector rotated_first, rotated_second;
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j) {
    float sin_angle, cos_angle;
    q4jit_rope::angle(pair + j, head_dim, position, theta, scale, &sin_angle, &cos_angle);
    const float a = __half2float(first.value[j]);
    const float b = __half2float(second.value[j]);
    rotated_first.value[j] = q4jit_rope::rotated_first(a, b, cos_angle, sin_angle);
    rotated_second.value[j] = q4jit_rope::rotated_second(a, b, cos_angle, sin_angle);
  }
  *reinterpret_cast<Vector*>(out + pair) = rotated_first;
  *reinterpret_cast<Vector*>(out + pair + half) = rotated_second;
}

template <int kBlockThreads = 128, int kVectorWidth = 2>
__global__ void __launch_bounds__(kBlockThreads)
    rope_cache_kernel(__half* q, int q_stride, const __half* k, int k_stride, const __half* v,
                      int v_stride, __half* key_cache, __half* value_cache, const int* positions,
                      int max_positions, int heads, int kv_heads, int head_dim, float theta,
                      float scale) {
  q4jit_device::grid_dependency_begin();
  static_assert(kBlockThreads % 32 == 0 && kBlockThreads >= 64 && kBlockThreads <= 256,
                "kBlockThreads: whole warps, 64 to 256");
  static_assert(kVectorWidth == 1 || kVectorWidth == 2 || kVectorWidth == 4 || kVectorWidth == 8,
                "kVectorWidth: 1, 2, 4 or 8");
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const size_t t = blockIdx.x;
  const int position = positions[t];
  const bool cached = position >= 0 && position < max_positions;
  const size_t cache_row = size_t(cached ? position : 0) * kv_heads * head_dim;  // [Hkv, D]
  const int chunks_per_head = head_dim / 2 / kVectorWidth;
  const int rotations = (heads + kv_heads) * chunks_per_head;
  const int copies = kv_heads * (head_dim / kVectorWidth);
  for (int item = blockIdx.y * kBlockThreads + threadIdx.x; item < rotations + copies;
       item += kBlockThreads * gridDim.y) {
    if (item < rotations) {
      const int head = item / chunks_per_head;
      const int pair = (item % chunks_per_head) * kVectorWidth;
      if (head < heads) {
        __half* q_head = q + t * q_stride + size_t(head) * head_dim;
        rotate<kVectorWidth>(q_head, q_head, pair, head_dim, float(position), theta, scale);
      } else if (cached) {
        const int kv_head = head - heads;
        rotate<kVectorWidth>(key_cache + cache_row + size_t(kv_head) * head_dim,
                             k + t * k_stride + size_t(kv_head) * head_dim, pair, head_dim,
                             float(position), theta, scale);
      }
    } else if (cached) {
      const int at = (item - rotations) * kVectorWidth;  // within [Hkv * D]
      *reinterpret_cast<Vector*>(value_cache + cache_row + at) =
          *reinterpret_cast<const Vector*>(v + t * v_stride + at);
    }
  }
}
