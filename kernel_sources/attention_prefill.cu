// attention_prefill: causal attention for T new queries at positions p0 .. p0+T-1 over the KV cache
// positions 0 .. p0+T-1 (already holding this call's keys: rope_cache runs first), GQA in place.
// Tiled SIMT flash attention: online softmax in fp32, K and V tiles staged in shared memory.
// The host descriptor is attention_prefill.hpp; the CPU reference is ref::attention. Not here:
// decode (attention_decode.cu), a tensor-core (mma.sync) path (not written yet).
//
// Layout:      q [T, H, D] fp16 with q_stride elements between tokens (a view of the qkv output)
//              out [T, H, D] fp16 with out_stride elements between tokens
//              key_cache, value_cache: one layer's [P_max, Hkv, D] fp16 (rope_cache.hpp)
//              Query head h reads KV head h / (H / Hkv).
// Geometry:    grid (ceil(T / kBlockQ), H), block (kWarps * 32), dynamic shared memory
//              2 (kBlockQ D + kBlockK (D + 2) + kBlockK D) bytes (attention_prefill.hpp).
//              Each warp owns kBlockQ / kWarps queries (rows warp, warp + kWarps, ...); for each
//              key tile, lane j scores keys j, j + 32, ... (K rows padded by one word: no bank
//              conflicts) and owns dims 2 lane + 64 i of the output.
// Parameters:  kHeadDim 64, 128; kBlockQ 16, 32, 64 queries per block; kBlockK 32, 64 keys per
//              tile; kWarps 2, 4, 8 with 1 <= kBlockQ / kWarps <= 8 (accumulators in registers).
// Parameters change only the fp32 summation order.
#include "portable.cuh"

#include "attention_common.cuh"
#include "q4jit_common.cuh"

template <int kHeadDim = 128, int kBlockQ = 32, int kBlockK = 64, int kWarps = 4>
__global__ void __launch_bounds__(kWarps * 32)
    attention_prefill_kernel(__half* out, int out_stride, const __half* q, int q_stride,
                             const __half* key_cache, const __half* value_cache, int tokens,
                             int first_position, int heads, int kv_heads, float scale) {
  q4jit_device::grid_dependency_begin();
  static_assert(kHeadDim == 64 || kHeadDim == 128, "kHeadDim: 64 or 128");
  static_assert(kBlockQ == 16 || kBlockQ == 32 || kBlockQ == 64, "kBlockQ: 16, 32, 64");
  static_assert(kBlockK == 32 || kBlockK == 64, "kBlockK: 32 or 64");
  static_assert(kWarps == 2 || kWarps == 4 || kWarps == 8, "kWarps: 2, 4, 8");
  static_assert(kBlockQ % kWarps == 0 && kBlockQ / kWarps <= 8, "1 to 8 queries per warp");
  constexpr int kThreads = kWarps * 32;
  constexpr int kQueriesPerWarp = kBlockQ / kWarps;
  constexpr int kKeysPerLane = kBlockK / 32;
  constexpr int kPairsPerLane = kHeadDim / 64;  // output half2 pairs per lane
  constexpr int kKeyStride = kHeadDim + 2;      // padded K row, in halves
  constexpr int kChunks = kHeadDim / 8;         // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __half* q_tile = reinterpret_cast<__half*>(shared_bytes);  // [kBlockQ, D]
  __half* k_tile = q_tile + kBlockQ * kHeadDim;              // [kBlockK, D + 2]
  __half* v_tile = k_tile + kBlockK * kKeyStride;            // [kBlockK, D]

  const int q0 = blockIdx.x * kBlockQ;
  const int head = blockIdx.y;
  const int kv_head = head / (heads / kv_heads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const size_t row_stride = size_t(kv_heads) * kHeadDim;
  const int last_key = first_position + min(q0 + kBlockQ, tokens) - 1;

  for (int i = threadIdx.x; i < kBlockQ * kChunks; i += kThreads) {
    const int row = i / kChunks, at = (i % kChunks) * 8;
    uint4 chunk = make_uint4(0, 0, 0, 0);
    if (q0 + row < tokens)
      chunk = *reinterpret_cast<const uint4*>(q + size_t(q0 + row) * q_stride +
                                              size_t(head) * kHeadDim + at);
    *reinterpret_cast<uint4*>(q_tile + row * kHeadDim + at) = chunk;
  }

  float maximum[kQueriesPerWarp], sum[kQueriesPerWarp];
  float2 output[kQueriesPerWarp][kPairsPerLane];
#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    maximum[qi] = q4jit_attention::negative_infinity();
    sum[qi] = 0.0f;
#pragma unroll
    for (int i = 0; i < kPairsPerLane; ++i) output[qi][i] = make_float2(0.0f, 0.0f);
  }

  for (int key0 = 0; key0 <= last_key; key0 += kBlockK) {
    __syncthreads();  // the previous tile is consumed (and, first time, q_tile is written)
    for (int i = threadIdx.x; i < kBlockK * kChunks; i += kThreads) {
      const int row = i / kChunks, at = (i % kChunks) * 8;
      uint4 key = make_uint4(0, 0, 0, 0), value = key;  // rows past the last key: zeros, not NaN
      if (key0 + row <= last_key) {
        const size_t offset = size_t(key0 + row) * row_stride + size_t(kv_head) * kHeadDim + at;
        key = *reinterpret_cast<const uint4*>(key_cache + offset);
        value = *reinterpret_cast<const uint4*>(value_cache + offset);
      }
      unsigned* key_words = reinterpret_cast<unsigned*>(k_tile + row * kKeyStride + at);
      key_words[0] = key.x, key_words[1] = key.y, key_words[2] = key.z, key_words[3] = key.w;
      *reinterpret_cast<uint4*>(v_tile + row * kHeadDim + at) = value;
    }
    __syncthreads();

#pragma unroll
    for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
      const int row = warp + qi * kWarps;
      const int position = first_position + q0 + row;
      if (q0 + row >= tokens || key0 > position) continue;  // warp-uniform
      const __half2* query = reinterpret_cast<const __half2*>(q_tile + row * kHeadDim);
      float weight[kKeysPerLane];
      float tile_max = q4jit_attention::negative_infinity();
#pragma unroll
      for (int kk = 0; kk < kKeysPerLane; ++kk) {
        const int key = lane + 32 * kk;
        const __half2* key_row = reinterpret_cast<const __half2*>(k_tile + key * kKeyStride);
        float dot = 0.0f;
#pragma unroll 8
        for (int d = 0; d < kHeadDim / 2; ++d) {
          const float2 a = __half22float2(query[d]);
          const float2 b = __half22float2(key_row[d]);
          dot += a.x * b.x + a.y * b.y;
        }
        weight[kk] = key0 + key <= position ? dot * scale : q4jit_attention::negative_infinity();
        tile_max = fmaxf(tile_max, weight[kk]);
      }
      // key0 <= position: lane 0's first key is visible, so the new maximum is finite.
      const float new_max = fmaxf(maximum[qi], q4jit_attention::warp_max(tile_max));
      const float correction = expf(maximum[qi] - new_max);
      float tile_sum = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKeysPerLane; ++kk) {
        weight[kk] = expf(weight[kk] - new_max);
        tile_sum += weight[kk];
      }
      sum[qi] = sum[qi] * correction + q4jit_device::warp_sum(tile_sum);
      maximum[qi] = new_max;
#pragma unroll
      for (int i = 0; i < kPairsPerLane; ++i) {
        output[qi][i].x *= correction;
        output[qi][i].y *= correction;
      }
#pragma unroll
      for (int kk = 0; kk < kKeysPerLane; ++kk) {
#pragma unroll 4
        for (int source = 0; source < 32; ++source) {
          const float w = __shfl_sync(0xffffffffu, weight[kk], source);
          const __half2* value_row =
              reinterpret_cast<const __half2*>(v_tile + (32 * kk + source) * kHeadDim);
#pragma unroll
          for (int i = 0; i < kPairsPerLane; ++i) {
            const float2 v = __half22float2(value_row[32 * i + lane]);
            output[qi][i].x += w * v.x;
            output[qi][i].y += w * v.y;
          }
        }
      }
    }
  }

#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    const int row = warp + qi * kWarps;
    if (q0 + row >= tokens) continue;
    __half2* out_row =
        reinterpret_cast<__half2*>(out + size_t(q0 + row) * out_stride + size_t(head) * kHeadDim);
    const float inverse = 1.0f / sum[qi];
#pragma unroll
    for (int i = 0; i < kPairsPerLane; ++i)
      out_row[32 * i + lane] =
          __floats2half2_rn(output[qi][i].x * inverse, output[qi][i].y * inverse);
  }
}
