// attention_decode: one query token per sequence step over the KV cache, split over the sequence
// (flash-decoding), grouped-query (GQA) without copying K or V. The host descriptor is
// attention_decode.hpp; the CPU reference is ref::attention with T = 1. Not here: prefill
// (attention_prefill.cu), the cache write (rope_cache.cu).
//
// Layout:      q [H, D] fp16 (the token's rotated queries) | out [H, D] fp16, element i written
//              at out_position[i] when out_position is not null (the o projection's act-order
//              row order, so that it needs no gather)
//              key_cache, value_cache: one layer's [P_max, Hkv, D] fp16 (rope_cache.hpp); the
//              query at position length-1 attends to positions 0 .. length-1. length is read
//              from device memory so that one captured graph serves every decode step.
//              Query head h reads KV head h / (H / Hkv).
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

template <int kHeadDim = 128, int kSplit = 256, int kThreads = 128, int kHeadsPerBlock = 1>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(__half* out, const __half* q, const __half* key_cache,
                            const __half* value_cache, int* counters, float* partials,
                            const int* length_in, int heads, int kv_heads, float scale,
                            const int* out_position) {
  q4jit_device::grid_dependency_begin();
  static_assert(kHeadDim == 64 || kHeadDim == 128, "kHeadDim: 64 or 128");
  static_assert(kSplit >= 64 && kSplit <= 1024 && (kSplit & (kSplit - 1)) == 0,
                "kSplit: a power of two, 64 to 1024");
  static_assert(kThreads == 64 || kThreads == 128 || kThreads == 256, "kThreads: 64, 128, 256");
  static_assert(
      kHeadsPerBlock == 1 || kHeadsPerBlock == 2 || kHeadsPerBlock == 4 || kHeadsPerBlock == 8,
      "kHeadsPerBlock: 1, 2, 4, 8");
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
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
    q4jit_attention::load8(query[hh], q + size_t(h0 + hh) * kHeadDim + column);
#pragma unroll
    for (int j = 0; j < 8; ++j) query[hh][j] *= scale;
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
      if (p < count) {
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
      if (p < count) q4jit_attention::load8(value[b], values + size_t(p) * row_stride);
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
