// attention_prefill_mma: causal attention for T new queries at positions p0 .. p0+T-1 over the KV
// cache positions 0 .. p0+T-1 on tensor cores (mma.sync m16n8k16, fp16 in, fp32 accumulation,
// sm_80+), FlashAttention-2 style. Same semantics and arguments as attention_prefill.cu (the SIMT
// version, kept for older GPUs and AMD). The host descriptor is attention_prefill_mma.hpp; the CPU
// reference is ref::attention. Not here: decode (attention_decode.cu).
//
// Layout:      q [T, H, D] fp16, q_stride elements between tokens (q_stride % 8 == 0)
//              out [T, H, D] fp16, out_stride elements between tokens (even)
//              key_cache, value_cache: one layer's [P_max, Hkv, D] fp16 (rope_cache.hpp)
//              Query head h reads KV head h / (H / Hkv).
// Geometry:    grid (ceil(T / kBlockQ), H), block (kBlockQ / 16 warps), dynamic shared memory
//              Layout::kBytes (attention_prefill_mma.hpp mirrors it). Query tiles run last tile
//              first: the causal blocks with the most keys start earliest.
// Warps:       each warp owns 16 query rows; its Q fragments stay in registers. Per key tile:
//              S = Q K^T (ldmatrix of K rows), online softmax on the S fragments in fp32 (a row
//              lives in one quad of lanes), P rounded to fp16 as the A operand of O += P V
//              (ldmatrix.trans of V rows). Key tiles past the block's last query are never
//              loaded; a warp skips tiles past its own last query.
// Pipeline:    K and V tiles through cp.async, kStages deep (1: load then compute; 2: the next
//              tile in flight while one is computed). Keys past the block's last one are
//              zero-filled, never read. Rows padded by 16 bytes: ldmatrix conflict-free.
// Parameters:  kHeadDim 64, 128; kBlockQ 64, 128 (4 or 8 warps); kBlockK 32, 64; kStages 1, 2.
// Parameters change only the fp32 summation order; P is rounded to fp16 in every configuration.
#include "portable.cuh"

#include "attention_common.cuh"
#include "mma_common.cuh"

namespace attention_prefill_mma_detail {

template <int kHeadDim, int kBlockQ, int kBlockK, int kStages>
struct Layout {
  static constexpr int kPitch = kHeadDim + 8;           // halves per shared row
  static constexpr int kQHalves = kBlockQ * kPitch;     // the Q tile, read once into registers
  static constexpr int kTileHalves = kBlockK * kPitch;  // one K or V tile
  static constexpr int kStageHalves = 2 * kTileHalves;  // K then V
  static constexpr int kBytes = 2 * (kQHalves + kStages * kStageHalves);
};

// ldmatrix with .trans: register i receives matrix i transposed, lane holding M[2 (lane % 4)]
// [lane / 4] and M[2 (lane % 4) + 1][lane / 4]; the B fragment when k runs down M's rows.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(q4jit_device::shared_address(row_address)));
}

// s[n] = this warp's 16 query rows times keys 8n .. 8n+7 of the tile (k_tile [kBlockK][kPitch]).
template <int kHeadDim, int kBlockK, int kPitch>
__device__ __forceinline__ void score_tile(float (&s)[kBlockK / 8][4],
                                           const unsigned (&q)[kHeadDim / 16][4],
                                           const __half* k_tile, int lane) {
#pragma unroll
  for (int n = 0; n < kBlockK / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
#pragma unroll
    for (int n = 0; n < kBlockK / 8; n += 2) {
      unsigned b[4];  // keys 8n..: b[0], b[1]; keys 8n + 8..: b[2], b[3]
      q4jit_device::ldmatrix_x4(b, k_tile + (n * 8 + lane % 8 + (lane / 16) * 8) * kPitch +
                                       kk * 16 + ((lane / 8) % 2) * 8);
      const unsigned b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
      q4jit_device::mma_16816(s[n], q[kk], b0);
      q4jit_device::mma_16816(s[n + 1], q[kk], b1);
    }
  }
}

// o[n] += P V for dims 8n .. 8n+7, P from the softmax weights in s (the C fragment of S is the A
// fragment of P once packed: keys 16j .. 16j+15 are s[2j] and s[2j + 1]).
template <int kHeadDim, int kBlockK, int kPitch>
__device__ __forceinline__ void accumulate_values(float (&o)[kHeadDim / 8][4],
                                                  const float (&s)[kBlockK / 8][4],
                                                  const __half* v_tile, int lane) {
  using q4jit_device::half2_bits;
#pragma unroll
  for (int j = 0; j < kBlockK / 16; ++j) {
    const unsigned a[4] = {half2_bits(__floats2half2_rn(s[2 * j][0], s[2 * j][1])),
                           half2_bits(__floats2half2_rn(s[2 * j][2], s[2 * j][3])),
                           half2_bits(__floats2half2_rn(s[2 * j + 1][0], s[2 * j + 1][1])),
                           half2_bits(__floats2half2_rn(s[2 * j + 1][2], s[2 * j + 1][3]))};
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; n += 2) {
      unsigned b[4];  // dims 8n..: b[0] keys 16j.., b[1] keys 16j + 8..; dims 8n + 8..: b[2], b[3]
      ldmatrix_x4_trans(b, v_tile + (16 * j + lane % 16) * kPitch + n * 8 + (lane / 16) * 8);
      const unsigned b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
      q4jit_device::mma_16816(o[n], a, b0);
      q4jit_device::mma_16816(o[n + 1], a, b1);
    }
  }
}

__device__ __forceinline__ float quad_max(float value) {
  value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 1));
  return fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 2));
}

__device__ __forceinline__ float quad_sum(float value) {
  value += __shfl_xor_sync(0xffffffffu, value, 1);
  return value + __shfl_xor_sync(0xffffffffu, value, 2);
}

// The running softmax of this thread's two rows (g and g + 8 of the warp's 16). Scores enter
// scaled by scale * log2(e), so weights are exp2 of the difference to the running maximum.
template <int kHeadDim, int kBlockK>
struct OnlineSoftmax {
  float maximum[2] = {q4jit_attention::negative_infinity(), q4jit_attention::negative_infinity()};
  float sum[2] = {0.0f, 0.0f};  // this thread's part of the row sums; quads add up at the end

  // s: scaled scores, masked keys -infinity, every row with at least one key visible so far
  // (key 0 is in the first tile), so the new maximum is finite. Turns s into weights and rescales
  // the output accumulated so far.
  __device__ __forceinline__ void update(float (&s)[kBlockK / 8][4], float (&o)[kHeadDim / 8][4]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = maximum[r];
#pragma unroll
      for (int n = 0; n < kBlockK / 8; ++n)
        tile_max = fmaxf(tile_max, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      const float new_max = quad_max(tile_max);
      const float correction = exp2f(maximum[r] - new_max);
      maximum[r] = new_max;
      float tile_sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kBlockK / 8; ++n) {
        s[n][2 * r] = exp2f(s[n][2 * r] - new_max);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - new_max);
        tile_sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      sum[r] = sum[r] * correction + tile_sum;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        o[n][2 * r] *= correction;
        o[n][2 * r + 1] *= correction;
      }
    }
  }
};

}  // namespace attention_prefill_mma_detail

template <int kHeadDim = 128, int kBlockQ = 64, int kBlockK = 64, int kStages = 2>
__global__ void __launch_bounds__(kBlockQ * 2)
    attention_prefill_mma_kernel(__half* out, int out_stride, const __half* q, int q_stride,
                                 const __half* key_cache, const __half* value_cache, int tokens,
                                 int first_position, int heads, int kv_heads, float scale) {
  q4jit_device::grid_dependency_begin();
  static_assert(kHeadDim == 64 || kHeadDim == 128, "kHeadDim: 64 or 128");
  static_assert(kBlockQ == 64 || kBlockQ == 128, "kBlockQ: 64 or 128 (16 rows per warp)");
  static_assert(kBlockK == 32 || kBlockK == 64, "kBlockK: 32 or 64");
  static_assert(kStages == 1 || kStages == 2, "kStages: 1 or 2");
  using namespace q4jit_device;
  using namespace attention_prefill_mma_detail;
  using L = Layout<kHeadDim, kBlockQ, kBlockK, kStages>;
  constexpr int kThreads = kBlockQ * 2;
  constexpr int kPitch = L::kPitch;
  constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __half* q_tile = reinterpret_cast<__half*>(shared_bytes);  // [kBlockQ][kPitch]
  __half* stages = q_tile + L::kQHalves;                     // kStages x (K, V) [kBlockK][kPitch]

  const int q0 = (gridDim.x - 1 - blockIdx.x) * kBlockQ;
  const int head = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int last_key = first_position + min(q0 + kBlockQ, tokens) - 1;  // the block's
  const int tiles = last_key / kBlockK + 1;
  const size_t row_stride = size_t(kv_heads) * kHeadDim;
  const size_t kv_offset = size_t(head / (heads / kv_heads)) * kHeadDim;
  const __half* keys = key_cache + kv_offset;
  const __half* values = value_cache + kv_offset;

  for (int i = threadIdx.x; i < kBlockQ * kChunks; i += kThreads) {
    const int row = i / kChunks, at = (i % kChunks) * 8;
    const bool inside = q0 + row < tokens;
    cp_async_16(q_tile + row * kPitch + at,
                inside ? q + size_t(q0 + row) * q_stride + size_t(head) * kHeadDim + at : q,
                inside ? 16 : 0);
  }
  cp_async_commit();
  auto load_tile = [&](int stage, int tile) {
    __half* k_stage = stages + stage * L::kStageHalves;
    __half* v_stage = k_stage + L::kTileHalves;
    const int key0 = tile * kBlockK;
    for (int i = threadIdx.x; i < kBlockK * kChunks; i += kThreads) {
      const int row = i / kChunks, at = (i % kChunks) * 8;
      const bool inside = key0 + row <= last_key;
      const size_t offset = inside ? size_t(key0 + row) * row_stride + at : 0;
      cp_async_16(k_stage + row * kPitch + at, keys + offset, inside ? 16 : 0);
      cp_async_16(v_stage + row * kPitch + at, values + offset, inside ? 16 : 0);
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(s, s);
    cp_async_commit();
  }
  cp_async_wait<kStages - 1>();  // the Q group
  __syncthreads();
  unsigned q_fragments[kHeadDim / 16][4];
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk)
    ldmatrix_x4(q_fragments[kk],
                q_tile + (warp * 16 + lane % 16) * kPitch + kk * 16 + (lane / 16) * 8);

  // This thread's rows: g and g + 8 of the warp's 16 (mma fragment rows), their last visible key.
  const int g = lane / 4, t = lane % 4;
  const int warp_row0 = q0 + warp * 16;
  const bool warp_has_rows = warp_row0 < tokens;  // else nothing of this warp is stored
  const int warp_first_position = first_position + warp_row0;
  int visible[2];  // rows past T: the block's last key, so their (unstored) scores stay finite
#pragma unroll
  for (int r = 0; r < 2; ++r) visible[r] = min(warp_first_position + g + 8 * r, last_key);
  const float scale_log2 = scale * 1.4426950408889634f;
  OnlineSoftmax<kHeadDim, kBlockK> softmax;
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int n = 0; n < kHeadDim / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

  for (int tile = 0; tile < tiles; ++tile) {
    if (tile + kStages - 1 < tiles) load_tile((tile + kStages - 1) % kStages, tile + kStages - 1);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncthreads();
    const int key0 = tile * kBlockK;
    if (warp_has_rows && key0 <= warp_first_position + 15) {  // warp-uniform
      const __half* k_stage = stages + (tile % kStages) * L::kStageHalves;
      float s[kBlockK / 8][4];
      score_tile<kHeadDim, kBlockK, kPitch>(s, q_fragments, k_stage, lane);
      const bool diagonal = key0 + kBlockK - 1 > warp_first_position;
#pragma unroll
      for (int n = 0; n < kBlockK / 8; ++n) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          s[n][c] *= scale_log2;
          if (diagonal && key0 + 8 * n + 2 * t + c % 2 > visible[c / 2])
            s[n][c] = q4jit_attention::negative_infinity();
        }
      }
      softmax.update(s, o);
      accumulate_values<kHeadDim, kBlockK, kPitch>(o, s, k_stage + L::kTileHalves, lane);
    }
    __syncthreads();  // the stage computed here is the next iteration's load target
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp_row0 + g + 8 * r;
    const float inverse = 1.0f / quad_sum(softmax.sum[r]);  // all lanes: the shuffles need them
    if (row >= tokens) continue;
    __half2* out_row =
        reinterpret_cast<__half2*>(out + size_t(row) * out_stride + size_t(head) * kHeadDim);
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n)
      out_row[4 * n + t] = __floats2half2_rn(o[n][2 * r] * inverse, o[n][2 * r + 1] * inverse);
  }
}
