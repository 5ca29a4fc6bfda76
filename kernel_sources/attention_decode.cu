// attention_decode: one query token per sequence step over the KV cache, split over the sequence
// (flash-decoding), grouped-query (GQA) without copying K or V. Two entry points share one body:
// attention_decode_kernel reads a rotated q and a cache that holds the new token (rope_cache ran
// first); attention_decode_rope_kernel does the new token's rope_cache work in the same launch, so
// a decode step runs one kernel instead of two. The host descriptor is attention_decode.hpp; the
// CPU reference is ref::rope then ref::attention with T = 1. Not here: prefill
// (attention_prefill.cu), the cache write of a prompt's tokens (rope_cache.cu).
//
// Layout:      q [H, D] fp16 (the token's rotated queries) | out [H, D] fp16, element i written
//              at out_position[i] when out_position is not null (the o projection's act-order
//              row order, so that it needs no gather)
//              key_cache, value_cache: one layer's [P_max, Hkv, D] fp16 (rope_cache.hpp); the
//              query at position length-1 attends to positions 0 .. length-1. length is read
//              from device memory so that one captured graph serves every decode step.
//              Query head h reads KV head h / (H / Hkv).
// Fused:       attention_decode_rope_kernel takes q before RoPE (read only), the token's k and v
//              [Hkv, D] (views of the qkv output) and positions[0], its position (= length - 1).
//              Every block rotates its queries as it loads them (one angle per pair in shared
//              memory); a block whose split holds the position rotates the new key and uses it and
//              the new value from shared memory for that row (the cache row may not be written
//              yet: another block of the launch writes it), and the split's block of each KV head's
//              first head group stores both into the caches. A position outside [0, P_max) writes
//              nothing and is read from the cache like any row. The rotation is rope_cache's
//              (rope.cuh), so outputs and cache rows are the bits of rope_cache then
//              attention_decode with the same configuration and splits.
// Geometry:    grid (H / kHeadsPerBlock, splits), block (kThreads), static shared memory; splits
//              >= ceil(length / kSplit) (splits past the length add nothing: maximum -inf, sum
//              0). Block (g, s) scores the kHeadsPerBlock query heads of group g, which share
//              one KV head (each key and value row is read once for all of them), against
//              positions [s kSplit, (s+1) kSplit): a partial maximum, sum and unnormalized output
//              per head go to the workspace, and the last block of group g to finish (a counter
//              per group) combines the splits: out = sum_s e^(m_s - m) o_s / sum_s e^(m_s - m) l_s.
//              One launch; with one split the block writes out directly and touches no workspace.
// Workspace:   counters int [H / kHeadsPerBlock], zero before the first launch and left zero by
//              every launch (graph replays need no memset); partials fp32: outputs
//              [H, splits, D], then maxima [H, splits], then sums [H, splits].
// Parameters:  kHeadDim 64, 128 (D; 8 fp16 per lane, D/8 lanes per key row), kSplit positions
//              per block 64..1024, kThreads 64..256, kHeadsPerBlock 1, 2, 4, 8 (divides H / Hkv).
// fp32 softmax with the maximum subtracted; parameters change only the fp32 summation order.
#include "portable.cuh"

#include "attention_common.cuh"
#include "q4jit_common.cuh"
#include "rope.cuh"

namespace q4jit_decode {

// What the fused launch adds to the unfused one's arguments.
struct NewToken {
  const __half* k = nullptr;  // [Hkv, D], before RoPE
  const __half* v = nullptr;  // [Hkv, D]
  __half* key_cache = nullptr;
  __half* value_cache = nullptr;
  const int* positions = nullptr;  // positions[0]
  int max_positions = 0;
  float theta = 0.0f, rope_scale = 1.0f;
};

// The new token's row as one block sees it: its index in the block's split (-1: not there) and its
// rotated key and its value, fp32 of the fp16 the cache holds, [D] in shared memory.
struct NewRow {
  int row = -1;
  const float* key = nullptr;
  const float* value = nullptr;
};

__device__ __forceinline__ void copy8(float* out, const float* source) {
#pragma unroll
  for (int j = 0; j < 8; ++j) out[j] = source[j];
}

// Pair i of the new key rotated and the value beside it, into shared memory (staged, [D] each) and,
// when `store`, into the caches' row `row` ([Hkv, D], at the KV head's offset `head`).
template <int kHeadDim>
__device__ __forceinline__ void stage_pair(const NewToken& token, size_t head, size_t row, int i,
                                           float cos_angle, float sin_angle, bool store,
                                           float* staged_key, float* staged_value) {
  constexpr int kHalf = kHeadDim / 2;
  const float a = __half2float(token.k[head + i]), b = __half2float(token.k[head + i + kHalf]);
  const __half first = q4jit_rope::rotated_first(a, b, cos_angle, sin_angle);
  const __half second = q4jit_rope::rotated_second(a, b, cos_angle, sin_angle);
  const __half value_first = token.v[head + i], value_second = token.v[head + i + kHalf];
  staged_key[i] = __half2float(first);
  staged_key[i + kHalf] = __half2float(second);
  staged_value[i] = __half2float(value_first);
  staged_value[i + kHalf] = __half2float(value_second);
  if (store) {
    token.key_cache[row + head + i] = first;
    token.key_cache[row + head + i + kHalf] = second;
    token.value_cache[row + head + i] = value_first;
    token.value_cache[row + head + i + kHalf] = value_second;
  }
}

// The fused launch's start: this thread's 8 query dims of each head rotated as rope_cache rotates
// them (rounded to fp16), then scaled; the new row staged when the block's split [start, start +
// count) holds it or the block stores it (`first_group`: the block of its KV head's first heads).
// The raw queries are loaded before the position is known, so their latency overlaps its load.
template <int kHeadDim, int kSplit, int kHeadsPerBlock>
__device__ __forceinline__ NewRow rotate_queries(float (&query)[kHeadsPerBlock][8], const __half* q,
                                                 float scale, const NewToken& token, int h0,
                                                 int kv_head, int kv_heads, bool first_group,
                                                 int start, int count, int column) {
  constexpr int kHalf = kHeadDim / 2;
  __shared__ float cos_table[kHalf], sin_table[kHalf];
  __shared__ float staged_key[kHeadDim], staged_value[kHeadDim];
  const int partner = column < kHalf ? column + kHalf : column - kHalf;
  uint4 own[kHeadsPerBlock], other[kHeadsPerBlock];
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
    own[hh] = *reinterpret_cast<const uint4*>(q + size_t(h0 + hh) * kHeadDim + column);
    other[hh] = *reinterpret_cast<const uint4*>(q + size_t(h0 + hh) * kHeadDim + partner);
  }
  const int position = *token.positions;
  const bool cached = position >= 0 && position < token.max_positions;
  const bool holds = cached && position >= start && position - start < count;
  const bool store = cached && first_group && position / kSplit == int(blockIdx.y);
  if (threadIdx.x < kHalf) {
    float sin_angle, cos_angle;
    q4jit_rope::angle(threadIdx.x, kHeadDim, float(position), token.theta, token.rope_scale,
                      &sin_angle, &cos_angle);
    cos_table[threadIdx.x] = cos_angle;
    sin_table[threadIdx.x] = sin_angle;
    const size_t row_stride = size_t(kv_heads) * kHeadDim;
    if (holds || store)
      stage_pair<kHeadDim>(token, size_t(kv_head) * kHeadDim, size_t(position) * row_stride,
                           threadIdx.x, cos_angle, sin_angle, store, staged_key, staged_value);
  }
  __syncthreads();
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
    float mine[8], paired[8];
    q4jit_attention::load8(mine, reinterpret_cast<const __half*>(&own[hh]));
    q4jit_attention::load8(paired, reinterpret_cast<const __half*>(&other[hh]));
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int pair = column % kHalf + j;
      const float c = cos_table[pair], s = sin_table[pair];
      const __half rotated = column < kHalf ? q4jit_rope::rotated_first(mine[j], paired[j], c, s)
                                            : q4jit_rope::rotated_second(paired[j], mine[j], c, s);
      query[hh][j] = __half2float(rotated) * scale;
    }
  }
  return {holds ? position - start : -1, staged_key, staged_value};
}

template <int kHeadDim, int kSplit, int kThreads, int kHeadsPerBlock, bool kRope>
__device__ __forceinline__ void attention_decode_body(
    __half* out, const __half* q, const __half* key_cache, const __half* value_cache, int* counters,
    float* partials, const int* length_in, int heads, int kv_heads, float scale,
    const int* out_position, const NewToken& token) {
  static_assert(kHeadDim == 64 || kHeadDim == 128, "kHeadDim: 64 or 128");
  static_assert(kSplit >= 64 && kSplit <= 1024 && (kSplit & (kSplit - 1)) == 0,
                "kSplit: a power of two, 64 to 1024");
  static_assert(kThreads == 64 || kThreads == 128 || kThreads == 256, "kThreads: 64, 128, 256");
  static_assert(
      kHeadsPerBlock == 1 || kHeadsPerBlock == 2 || kHeadsPerBlock == 4 || kHeadsPerBlock == 8,
      "kHeadsPerBlock: 1, 2, 4, 8");
  static_assert(kHeadDim / 2 <= kThreads, "one thread per rotation pair");
  constexpr int kLanes = kHeadDim / 8;  // threads per key row, 16 bytes each
  constexpr int kRowsPerPass = kThreads / kLanes;
  constexpr int kWarps = kThreads / 32;
  __shared__ float scores[kHeadsPerBlock][kSplit];  // then e^(score - max)
  __shared__ float head_max[kHeadsPerBlock], head_sum[kHeadsPerBlock];
  __shared__ float accumulated[kHeadsPerBlock][kHeadDim];
  __shared__ bool last_block;

  const int length = *length_in;
  const int h0 = blockIdx.x * kHeadsPerBlock;
  const int kv_head = h0 / (heads / kv_heads);
  const int split = blockIdx.y, splits = gridDim.y;
  const int start = split * kSplit;
  const int count = min(kSplit, length - start);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int column = (threadIdx.x % kLanes) * 8;  // first of this thread's 8 dims
  const int row_slot = threadIdx.x / kLanes;
  const size_t row_stride = size_t(kv_heads) * kHeadDim;
  const __half* keys = key_cache + size_t(start) * row_stride + size_t(kv_head) * kHeadDim + column;
  const __half* values =
      value_cache + size_t(start) * row_stride + size_t(kv_head) * kHeadDim + column;

  float query[kHeadsPerBlock][8];
  NewRow new_row;
  if constexpr (kRope) {
    const bool first_group = h0 % (heads / kv_heads) == 0;
    new_row = rotate_queries<kHeadDim, kSplit, kHeadsPerBlock>(
        query, q, scale, token, h0, kv_head, kv_heads, first_group, start, count, column);
  } else {
#pragma unroll
    for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
      q4jit_attention::load8(query[hh], q + size_t(h0 + hh) * kHeadDim + column);
#pragma unroll
      for (int j = 0; j < 8; ++j) query[hh][j] *= scale;
    }
  }
  for (int i = threadIdx.x; i < kHeadsPerBlock * kHeadDim; i += kThreads)
    (&accumulated[0][0])[i] = 0.0f;

  // Scores: kLanes threads per key row, reduced by shuffles inside their aligned lane group. Each
  // thread has kBatch key rows in flight: one at a time, a 64-position split waited on four
  // load latencies in series (13 us per layer at decode on the H100).
  constexpr int kBatch = 4;
  for (int base = 0; base < count; base += kBatch * kRowsPerPass) {
    float key[kBatch][8];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int p = base + b * kRowsPerPass + row_slot;
      if (kRope && p == new_row.row) {
        copy8(key[b], new_row.key + column);
      } else if (p < count) {
        q4jit_attention::load8(key[b], keys + size_t(p) * row_stride);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) key[b][j] = 0.0f;
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int p = base + b * kRowsPerPass + row_slot;
      float dots[kHeadsPerBlock] = {};
#pragma unroll
      for (int hh = 0; hh < kHeadsPerBlock; ++hh)
#pragma unroll
        for (int j = 0; j < 8; ++j) dots[hh] += query[hh][j] * key[b][j];
#pragma unroll
      for (int hh = 0; hh < kHeadsPerBlock; ++hh)
#pragma unroll
        for (int offset = kLanes / 2; offset > 0; offset >>= 1)
          dots[hh] += __shfl_xor_sync(0xffffffffu, dots[hh], offset);
      if (p < count && column == 0) {
#pragma unroll
        for (int hh = 0; hh < kHeadsPerBlock; ++hh) scores[hh][p] = dots[hh];
      }
    }
  }
  __syncthreads();

  // Softmax statistics of this split, one warp per head.
  for (int hh = warp; hh < kHeadsPerBlock; hh += kWarps) {
    float maximum = q4jit_attention::negative_infinity();
    for (int i = lane; i < count; i += 32) maximum = fmaxf(maximum, scores[hh][i]);
    maximum = q4jit_attention::warp_max(maximum);
    float sum = 0.0f;
    for (int i = lane; i < count; i += 32) {
      const float weight = expf(scores[hh][i] - maximum);
      scores[hh][i] = weight;
      sum += weight;
    }
    sum = q4jit_device::warp_sum(sum);
    if (lane == 0) head_max[hh] = maximum, head_sum[hh] = sum;
  }
  __syncthreads();

  // Weighted values: each thread sums its 8 dims over its rows, then the warp's row slots are
  // folded by shuffles and the warps by shared-memory atomics.
  float output[kHeadsPerBlock][8] = {};
  for (int base = row_slot; base < count; base += kBatch * kRowsPerPass) {
    float value[kBatch][8];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int p = base + b * kRowsPerPass;
      if (kRope && p == new_row.row) {
        copy8(value[b], new_row.value + column);
      } else if (p < count) {
        q4jit_attention::load8(value[b], values + size_t(p) * row_stride);
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int p = base + b * kRowsPerPass;
      if (p >= count) break;
#pragma unroll
      for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
        const float weight = scores[hh][p];
#pragma unroll
        for (int j = 0; j < 8; ++j) output[hh][j] += weight * value[b][j];
      }
    }
  }
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int offset = kLanes; offset < 32; offset <<= 1)
        output[hh][j] += __shfl_xor_sync(0xffffffffu, output[hh][j], offset);
  if (lane < kLanes) {
#pragma unroll
    for (int hh = 0; hh < kHeadsPerBlock; ++hh)
#pragma unroll
      for (int j = 0; j < 8; ++j) atomicAdd(&accumulated[hh][column + j], output[hh][j]);
  }
  __syncthreads();

  if (splits == 1) {
    for (int i = threadIdx.x; i < kHeadsPerBlock * kHeadDim; i += kThreads) {
      const int hh = i / kHeadDim;
      const size_t index = size_t(h0) * kHeadDim + i;
      out[out_position ? out_position[index] : index] =
          __float2half(accumulated[hh][i % kHeadDim] / head_sum[hh]);
    }
    return;
  }
  float* partial_out = partials;                                      // [H, splits, D]
  float* partial_max = partials + size_t(heads) * splits * kHeadDim;  // [H, splits]
  float* partial_sum = partial_max + size_t(heads) * splits;          // [H, splits]
  for (int i = threadIdx.x; i < kHeadsPerBlock * kHeadDim; i += kThreads) {
    const int hh = i / kHeadDim;
    partial_out[(size_t(h0 + hh) * splits + split) * kHeadDim + i % kHeadDim] =
        accumulated[hh][i % kHeadDim];
  }
  if (threadIdx.x < kHeadsPerBlock) {
    partial_max[size_t(h0 + threadIdx.x) * splits + split] = head_max[threadIdx.x];
    partial_sum[size_t(h0 + threadIdx.x) * splits + split] = head_sum[threadIdx.x];
  }
  __threadfence();  // partials visible device-wide before the counter says so
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(&counters[blockIdx.x], 1) == splits - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();

  // The group's last block combines every split (reads through L2: other blocks wrote them).
  for (int i = threadIdx.x; i < kHeadsPerBlock * kHeadDim; i += kThreads) {
    const size_t head = h0 + i / kHeadDim;
    const int d = i % kHeadDim;
    float maximum = q4jit_attention::negative_infinity();
    for (int s = 0; s < splits; ++s)
      maximum = fmaxf(maximum, __ldcg(&partial_max[head * splits + s]));
    float numerator = 0.0f, denominator = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float weight = expf(__ldcg(&partial_max[head * splits + s]) - maximum);
      denominator += weight * __ldcg(&partial_sum[head * splits + s]);
      numerator += weight * __ldcg(&partial_out[(head * splits + s) * kHeadDim + d]);
    }
    const size_t index = head * kHeadDim + d;
    out[out_position ? out_position[index] : index] = __float2half(numerator / denominator);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;  // ready for the next launch
}

}  // namespace q4jit_decode

template <int kHeadDim = 128, int kSplit = 256, int kThreads = 128, int kHeadsPerBlock = 1>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(__half* out, const __half* q, const __half* key_cache,
                            const __half* value_cache, int* counters, float* partials,
                            const int* length_in, int heads, int kv_heads, float scale,
                            const int* out_position) {
  q4jit_device::grid_dependency_begin();
  q4jit_decode::attention_decode_body<kHeadDim, kSplit, kThreads, kHeadsPerBlock, false>(
      out, q, key_cache, value_cache, counters, partials, length_in, heads, kv_heads, scale,
      out_position, q4jit_decode::NewToken{});
}

// The fused launch (see Fused above): q before RoPE; k, v the new token's [Hkv, D]; positions[0]
// its position; the caches written at that row (below max_positions).
template <int kHeadDim = 128, int kSplit = 256, int kThreads = 128, int kHeadsPerBlock = 1>
__global__ void __launch_bounds__(kThreads)
    attention_decode_rope_kernel(__half* out, const __half* q, const __half* k, const __half* v,
                                 __half* key_cache, __half* value_cache, int* counters,
                                 float* partials, const int* positions, const int* length_in,
                                 int max_positions, int heads, int kv_heads, float theta,
                                 float rope_scale, float scale, const int* out_position) {
  q4jit_device::grid_dependency_begin();
  const q4jit_decode::NewToken token{
      k, v, key_cache, value_cache, positions, max_positions, theta, rope_scale};
  q4jit_decode::attention_decode_body<kHeadDim, kSplit, kThreads, kHeadsPerBlock, true>(
      out, q, key_cache, value_cache, counters, partials, length_in, heads, kv_heads, scale,
      out_position, token);
}
