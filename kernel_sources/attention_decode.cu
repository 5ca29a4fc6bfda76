// attention_decode: one query token per sequence step over the KV cache, split over the sequence
// (flash-decoding), grouped-query (GQA) without copying K or V. Two entry points share one body:
// attention_decode_kernel reads a rotated q and a cache that holds the new token (rope_cache ran
// first); attention_decode_rope_kernel does the new token's rope_cache work in the same launch, so
// a decode step runs one kernel instead of two. The host descriptor is attention_decode.hpp; the
// CPU reference is ref::rope then ref::attention with T = 1. Not here: prefill
// (attention_prefill.cu), the cache write of a prompt's tokens (rope_cache.cu).
//
// Why it is shaped so: at decode lengths the arithmetic is tiny and a block's time is the chain of
// dependent global-memory round trips (about 0.6-0.8 us each on the H100), not bytes. So there is
// one burst of loads per split at short lengths: each thread issues its K rows AND its V rows
// (the V rows do not depend on the scores) together, held as raw fp16 (uint4) and widened when
// used, while q, out_position and the fused launch's position went out with the length before.
// A burst is kBatchRows rows per thread (batch_rows: 8, or 4 at 256 threads to keep 64
// registers); split 64 at 128 or 256 threads (D 128) is one burst. Longer splits loop over K in
// bursts of that size, the first batch's V rows riding with its K rows, and after the softmax over
// the V rows left. The last block combines the splits' partials read 8 splits per burst.
// Round trips of a multi-split block at short lengths: the length; the K/V burst; the partials'
// fence; the counter; and in the last block, the combine's burst and the output store (no
// out_position read before it, for up to 2 outputs per thread). Before (split 64, 128 threads):
// the length, 2 K batches, 2 V batches, the same fence and counter, the partials read split by
// split and out_position read before the store; the fused launch also waited for the new row.
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
//              yet: another block of the launch writes it, so this block never reads it), and the
//              split's block of each KV head's first head group stores both into the caches. A
//              position outside [0, P_max) writes nothing and is read from the cache like any row.
//              The rotation is rope_cache's (rope.cuh), so outputs and cache rows are the bits of
//              rope_cache then attention_decode with the same configuration and splits. The first
//              K rows go out before the angles and the new row's loads, the V rows after them,
//              so that the keys' latency covers both.
// Early loads: the fused launch reads the step's length and position, out_position and its first
//              burst of cache rows before its grid dependency wait, so that they arrive while the
//              qkv projection before it finishes. None of them is written by the kernel just before
//              (the portable.cuh invariant): a kernel can start only after the one before it has
//              passed its own wait, so every kernel two or more launches back has completed. The
//              caller must not launch it right after a kernel that writes the cache rows it reads
//              (the engine runs it after the qkv projection; the unfused kernel, which runs after
//              rope_cache, waits first).
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

// This thread's 8 dims of each of the block's query heads as loaded (fp16).
template <int kHeadsPerBlock>
struct RawQueries {
  uint4 own[kHeadsPerBlock];
};

__device__ __forceinline__ void copy8(float* out, const float* source) {
#pragma unroll
  for (int j = 0; j < 8; ++j) out[j] = source[j];
}

__device__ __forceinline__ void widen8(float* out, const uint4& raw) {
  q4jit_attention::load8(out, reinterpret_cast<const __half*>(&raw));
}

template <int kHeadDim, int kHeadsPerBlock>
__device__ __forceinline__ RawQueries<kHeadsPerBlock> load_queries(const __half* q, int h0,
                                                                   int column) {
  RawQueries<kHeadsPerBlock> raw;
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh)
    raw.own[hh] = *reinterpret_cast<const uint4*>(q + size_t(h0 + hh) * kHeadDim + column);
  return raw;
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

// The fused launch's shared state: each pair's angle at the position, and the new row (its rotated
// key and its value, fp32 of the fp16 the cache holds). One per kernel: a __shared__ variable of
// a device function is static.
template <int kHeadDim>
struct RopeStage {
  float cos_table[kHeadDim / 2], sin_table[kHeadDim / 2];
  float key[kHeadDim], value[kHeadDim];
};

template <int kHeadDim>
__device__ __forceinline__ RopeStage<kHeadDim>& rope_stage() {
  __shared__ RopeStage<kHeadDim> stage;
  return stage;
}

// The fused launch's angles at `position` into the tables, and the new row staged when the block
// uses it (`row` >= 0, its index in the split) or stores it into the caches (`store`).
template <int kHeadDim>
__device__ __forceinline__ void stage_new_row(RopeStage<kHeadDim>& stage, const NewToken& token,
                                              int position, int row, bool store, int kv_head,
                                              int kv_heads) {
  if (threadIdx.x >= kHeadDim / 2) return;
  float sin_angle, cos_angle;
  q4jit_rope::angle(threadIdx.x, kHeadDim, float(position), token.theta, token.rope_scale,
                    &sin_angle, &cos_angle);
  stage.cos_table[threadIdx.x] = cos_angle;
  stage.sin_table[threadIdx.x] = sin_angle;
  const size_t row_stride = size_t(kv_heads) * kHeadDim;
  if (row >= 0 || store)
    stage_pair<kHeadDim>(token, size_t(kv_head) * kHeadDim, size_t(position) * row_stride,
                         threadIdx.x, cos_angle, sin_angle, store, stage.key, stage.value);
}

// The fused launch's queries (after the tables are staged and the block synchronized): this
// thread's 8 query dims of each head rotated as rope_cache rotates them (rounded to fp16), then
// scaled. The 8 dims they pair with (D/2 away) are the ones the thread kLanes/2 lanes away
// loaded: a shuffle, not a second load (every lane takes part).
template <int kHeadDim, int kHeadsPerBlock>
__device__ __forceinline__ void rotate_queries(float (&query)[kHeadsPerBlock][8],
                                               const RawQueries<kHeadsPerBlock>& raw, float scale,
                                               const RopeStage<kHeadDim>& stage, int column) {
  constexpr int kHalf = kHeadDim / 2;
  constexpr int kPartnerLanes = kHeadDim / 16;  // kLanes / 2
#pragma unroll
  for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
    uint4 partner;
    partner.x = __shfl_xor_sync(0xffffffffu, raw.own[hh].x, kPartnerLanes);
    partner.y = __shfl_xor_sync(0xffffffffu, raw.own[hh].y, kPartnerLanes);
    partner.z = __shfl_xor_sync(0xffffffffu, raw.own[hh].z, kPartnerLanes);
    partner.w = __shfl_xor_sync(0xffffffffu, raw.own[hh].w, kPartnerLanes);
    float mine[8], paired[8];
    widen8(mine, raw.own[hh]);
    widen8(paired, partner);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int pair = column % kHalf + j;
      const float c = stage.cos_table[pair], s = stage.sin_table[pair];
      const __half rotated = column < kHalf ? q4jit_rope::rotated_first(mine[j], paired[j], c, s)
                                            : q4jit_rope::rotated_second(paired[j], mine[j], c, s);
      query[hh][j] = __half2float(rotated) * scale;
    }
  }
}

// This thread's rows first, first + kRowsPerPass, ... (kBatchRows of them) of `rows` ([., row
// stride] fp16 at the thread's column) as loaded; zero past `count` and at `skip` (the new token's
// row, which the fused launch takes from shared memory).
template <int kBatchRows, int kRowsPerPass>
__device__ __forceinline__ void load_batch(uint4 (&raw)[kBatchRows], const __half* rows,
                                           size_t row_stride, int first, int count, int skip) {
#pragma unroll
  for (int b = 0; b < kBatchRows; ++b) {
    const int p = first + b * kRowsPerPass;
    raw[b] = p < count && p != skip ? *reinterpret_cast<const uint4*>(rows + size_t(p) * row_stride)
                                    : make_uint4(0, 0, 0, 0);
  }
}

// Row p's 8 dims: the new token's (at `new_row`, from `new_row_dims` [D] in shared memory) at
// this thread's column, any other row as loaded.
template <bool kRope>
__device__ __forceinline__ void row8(float (&out)[8], const uint4& raw, int p, int new_row,
                                     const float* new_row_dims, int column) {
  if (kRope && p == new_row) {
    copy8(out, new_row_dims + column);
  } else {
    widen8(out, raw);
  }
}

// Scores of one batch of key rows: kLanes threads per row, reduced by shuffles inside their aligned
// lane group (every lane takes part, rows past the split included), written by the group's first.
template <int kLanes, int kRowsPerPass, int kBatchRows, int kSplit, int kHeadsPerBlock, bool kRope>
__device__ __forceinline__ void score_batch(float (&scores)[kHeadsPerBlock][kSplit],
                                            const float (&query)[kHeadsPerBlock][8],
                                            const uint4 (&raw)[kBatchRows], int first, int count,
                                            const NewRow& new_row, int column) {
#pragma unroll
  for (int b = 0; b < kBatchRows; ++b) {
    const int p = first + b * kRowsPerPass;
    float key[8];
    row8<kRope>(key, raw[b], p, new_row.row, new_row.key, column);
    float dots[kHeadsPerBlock] = {};
#pragma unroll
    for (int hh = 0; hh < kHeadsPerBlock; ++hh)
#pragma unroll
      for (int j = 0; j < 8; ++j) dots[hh] += query[hh][j] * key[j];
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

// One batch of value rows weighted by e^(score - max) (in `scores` by now) into this thread's sums.
template <int kRowsPerPass, int kBatchRows, int kSplit, int kHeadsPerBlock, bool kRope>
__device__ __forceinline__ void accumulate_batch(float (&output)[kHeadsPerBlock][8],
                                                 const float (&scores)[kHeadsPerBlock][kSplit],
                                                 const uint4 (&raw)[kBatchRows], int first,
                                                 int count, const NewRow& new_row, int column) {
#pragma unroll
  for (int b = 0; b < kBatchRows; ++b) {
    const int p = first + b * kRowsPerPass;
    if (p >= count) break;
    float value[8];
    row8<kRope>(value, raw[b], p, new_row.row, new_row.value, column);
#pragma unroll
    for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
      const float weight = scores[hh][p];
#pragma unroll
      for (int j = 0; j < 8; ++j) output[hh][j] += weight * value[j];
    }
  }
}

// Softmax statistics of this split, one warp per head: scores become e^(score - max).
template <int kWarps, int kSplit, int kHeadsPerBlock>
__device__ __forceinline__ void softmax_split(float (&scores)[kHeadsPerBlock][kSplit],
                                              float (&head_max)[kHeadsPerBlock],
                                              float (&head_sum)[kHeadsPerBlock], int count) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
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
}

// Where this thread's output elements go: element i = threadIdx.x + k kThreads of the block's
// [kHeadsPerBlock, D] at index h0 D + i, or out_position of it. Read at the start, when the
// thread has few (kPrefetched), so that the final write waits on no load; else when written.
template <int kHeadDim, int kThreads, int kHeadsPerBlock>
struct Destinations {
  static constexpr int kElements = kHeadsPerBlock * kHeadDim;
  static constexpr int kPerThread = (kElements + kThreads - 1) / kThreads;
  static constexpr int kPrefetched = kPerThread <= 2 ? kPerThread : 0;
  int index[kPrefetched > 0 ? kPrefetched : 1];
  const int* out_position;
  size_t first;  // h0 D

  __device__ __forceinline__ Destinations(const int* order, int h0) {
    out_position = order;
    first = size_t(h0) * kHeadDim;
#pragma unroll
    for (int k = 0; k < kPrefetched; ++k) {
      const int i = threadIdx.x + k * kThreads;
      index[k] = i < kElements ? lookup(i) : 0;
    }
  }
  __device__ __forceinline__ int lookup(int i) const {
    return out_position ? out_position[first + i] : int(first + i);
  }
  __device__ __forceinline__ size_t at(int k, int i) const {
    return size_t(k < kPrefetched ? index[k] : lookup(i));
  }
};

// The combine's partials of splits [s0, s0 + kCount) for one output element; past `splits`, a
// maximum of -inf (which no fmaxf takes) and nothing else read.
template <int kCount>
__device__ __forceinline__ void load_partials(float (&maxima)[kCount], float (&sums)[kCount],
                                              float (&outputs)[kCount], const float* partial_out,
                                              const float* partial_max, const float* partial_sum,
                                              size_t head, int d, int splits, int s0,
                                              int head_dim) {
#pragma unroll
  for (int b = 0; b < kCount; ++b) {
    const int s = s0 + b;
    const bool present = s < splits;
    maxima[b] =
        present ? __ldcg(&partial_max[head * splits + s]) : q4jit_attention::negative_infinity();
    sums[b] = present ? __ldcg(&partial_sum[head * splits + s]) : 0.0f;
    outputs[b] = present ? __ldcg(&partial_out[(head * splits + s) * head_dim + d]) : 0.0f;
  }
}

// Output element d of `head` from every split's partials: the maximum over the splits, then
// sum_s e^(m_s - m) o_s / sum_s e^(m_s - m) l_s in split order, the partials read kCombineBatch
// splits per burst (so one burst up to that many splits; reads through L2: other blocks wrote
// them).
template <int kHeadDim>
__device__ __forceinline__ float combine_splits(const float* partial_out, const float* partial_max,
                                                const float* partial_sum, size_t head, int d,
                                                int splits) {
  constexpr int kCombineBatch = 8;
  float maxima[kCombineBatch], sums[kCombineBatch], outputs[kCombineBatch];
  load_partials(maxima, sums, outputs, partial_out, partial_max, partial_sum, head, d, splits, 0,
                kHeadDim);
  float maximum = q4jit_attention::negative_infinity();
#pragma unroll
  for (int b = 0; b < kCombineBatch; ++b) maximum = fmaxf(maximum, maxima[b]);
  for (int s0 = kCombineBatch; s0 < splits; s0 += kCombineBatch) {
    float more[kCombineBatch];
#pragma unroll
    for (int b = 0; b < kCombineBatch; ++b)
      more[b] = s0 + b < splits ? __ldcg(&partial_max[head * splits + s0 + b])
                                : q4jit_attention::negative_infinity();
#pragma unroll
    for (int b = 0; b < kCombineBatch; ++b) maximum = fmaxf(maximum, more[b]);
  }
  float numerator = 0.0f, denominator = 0.0f;
  for (int s0 = 0; s0 < splits; s0 += kCombineBatch) {
    if (s0 > 0)
      load_partials(maxima, sums, outputs, partial_out, partial_max, partial_sum, head, d, splits,
                    s0, kHeadDim);
#pragma unroll
    for (int b = 0; b < kCombineBatch; ++b) {
      if (s0 + b >= splits) break;
      const float weight = expf(maxima[b] - maximum);
      denominator += weight * sums[b];
      numerator += weight * outputs[b];
    }
  }
  return numerator / denominator;
}

// Key rows (and as many value rows) per thread per burst, held as uint4 registers: 8 (split 64 at
// 128 threads is one burst), 4 at 256 threads (split 64 one burst) so that a 256-thread block
// keeps to 64 registers, the 4 blocks per SM that the engine's block budget (4 x SMs) assumes;
// fewer as more heads' queries take registers, and never more than the split gives a thread.
__host__ __device__ constexpr int batch_rows(int split, int threads, int rows_per_pass,
                                             int heads_per_block) {
  const int by_threads = threads >= 256 ? 4 : 8;
  const int by_heads = heads_per_block <= 2 ? 8 : 16 / heads_per_block;
  const int most = by_threads < by_heads ? by_threads : by_heads;
  return most < split / rows_per_pass ? most : split / rows_per_pass;
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
  constexpr int kBatchRows = batch_rows(kSplit, kThreads, kRowsPerPass, kHeadsPerBlock);
  constexpr int kBurst = kBatchRows * kRowsPerPass;  // positions per burst
  __shared__ float scores[kHeadsPerBlock][kSplit];   // then e^(score - max)
  __shared__ float head_max[kHeadsPerBlock], head_sum[kHeadsPerBlock];
  __shared__ float accumulated[kHeadsPerBlock][kHeadDim];
  __shared__ bool last_block;

  // Loads that do not depend on the length go out beside it. The fused launch reads the length,
  // the position, the output order and the first burst of cache rows before its grid dependency
  // wait (see Early loads above), and the queries after it.
  const int length = *length_in;
  const int position = kRope ? *token.positions : -1;
  const int h0 = blockIdx.x * kHeadsPerBlock;
  const int column = (threadIdx.x % kLanes) * 8;  // first of this thread's 8 dims
  RawQueries<kHeadsPerBlock> raw_queries;
  if constexpr (!kRope) raw_queries = load_queries<kHeadDim, kHeadsPerBlock>(q, h0, column);
  const Destinations<kHeadDim, kThreads, kHeadsPerBlock> destinations(out_position, h0);

  const int kv_head = h0 / (heads / kv_heads);
  const int split = blockIdx.y, splits = gridDim.y;
  const int start = split * kSplit;
  const int count = min(kSplit, length - start);
  const int row_slot = threadIdx.x / kLanes;
  const size_t row_stride = size_t(kv_heads) * kHeadDim;
  const __half* keys = key_cache + size_t(start) * row_stride + size_t(kv_head) * kHeadDim + column;
  const __half* values =
      value_cache + size_t(start) * row_stride + size_t(kv_head) * kHeadDim + column;

  // The fused launch's new row: the split's row at the position (not read from the cache), and
  // whether this block stores it (the block of its KV head's first head group).
  int new_row_index = -1;
  bool store = false;
  if constexpr (kRope) {
    const bool cached = position >= 0 && position < token.max_positions;
    if (cached && position >= start && position - start < count) new_row_index = position - start;
    store = cached && h0 % (heads / kv_heads) == 0 && position / kSplit == split;
  }

  // The first burst: the first batch's key rows and value rows (which do not depend on the scores).
  // The fused launch then waits for the projection that wrote q, k and v, loads the queries,
  // computes its angles and stages the new row, all under the burst's latency.
  uint4 key_raw[kBatchRows], value_raw[kBatchRows];
  load_batch<kBatchRows, kRowsPerPass>(key_raw, keys, row_stride, row_slot, count, new_row_index);
  load_batch<kBatchRows, kRowsPerPass>(value_raw, values, row_stride, row_slot, count,
                                       new_row_index);
  if constexpr (kRope) {
    q4jit_device::grid_dependency_begin();
    raw_queries = load_queries<kHeadDim, kHeadsPerBlock>(q, h0, column);
    stage_new_row<kHeadDim>(rope_stage<kHeadDim>(), token, position, new_row_index, store, kv_head,
                            kv_heads);
  }

  float query[kHeadsPerBlock][8];
  NewRow new_row;
  if constexpr (kRope) {
    __syncthreads();  // the tables and the new row staged
    const RopeStage<kHeadDim>& stage = rope_stage<kHeadDim>();
    rotate_queries<kHeadDim, kHeadsPerBlock>(query, raw_queries, scale, stage, column);
    new_row = {new_row_index, stage.key, stage.value};
  } else {
#pragma unroll
    for (int hh = 0; hh < kHeadsPerBlock; ++hh) {
      widen8(query[hh], raw_queries.own[hh]);
#pragma unroll
      for (int j = 0; j < 8; ++j) query[hh][j] *= scale;
    }
  }
  for (int i = threadIdx.x; i < kHeadsPerBlock * kHeadDim; i += kThreads)
    (&accumulated[0][0])[i] = 0.0f;

  score_batch<kLanes, kRowsPerPass, kBatchRows, kSplit, kHeadsPerBlock, kRope>(
      scores, query, key_raw, row_slot, count, new_row, column);
  for (int base = kBurst; base < count; base += kBurst) {
    load_batch<kBatchRows, kRowsPerPass>(key_raw, keys, row_stride, base + row_slot, count,
                                         new_row.row);
    score_batch<kLanes, kRowsPerPass, kBatchRows, kSplit, kHeadsPerBlock, kRope>(
        scores, query, key_raw, base + row_slot, count, new_row, column);
  }
  __syncthreads();
  softmax_split<kWarps, kSplit, kHeadsPerBlock>(scores, head_max, head_sum, count);
  __syncthreads();

  // Weighted values: each thread sums its 8 dims over its rows (the first batch's already in
  // registers), then the warp's row slots are folded by shuffles and the warps by shared-memory
  // atomics.
  float output[kHeadsPerBlock][8] = {};
  accumulate_batch<kRowsPerPass, kBatchRows, kSplit, kHeadsPerBlock, kRope>(
      output, scores, value_raw, row_slot, count, new_row, column);
  for (int base = kBurst; base < count; base += kBurst) {
    load_batch<kBatchRows, kRowsPerPass>(value_raw, values, row_stride, base + row_slot, count,
                                         new_row.row);
    accumulate_batch<kRowsPerPass, kBatchRows, kSplit, kHeadsPerBlock, kRope>(
        output, scores, value_raw, base + row_slot, count, new_row, column);
  }
  const int lane = threadIdx.x % 32;
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

  using Outputs = Destinations<kHeadDim, kThreads, kHeadsPerBlock>;
  if (splits == 1) {
#pragma unroll
    for (int k = 0; k < Outputs::kPerThread; ++k) {
      const int i = threadIdx.x + k * kThreads;
      if (i >= Outputs::kElements) break;
      const int hh = i / kHeadDim;
      out[destinations.at(k, i)] = __float2half(accumulated[hh][i % kHeadDim] / head_sum[hh]);
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

  // The group's last block combines every split.
#pragma unroll
  for (int k = 0; k < Outputs::kPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i >= Outputs::kElements) break;
    const size_t head = h0 + i / kHeadDim;
    out[destinations.at(k, i)] = __float2half(combine_splits<kHeadDim>(
        partial_out, partial_max, partial_sum, head, i % kHeadDim, splits));
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
  // grid_dependency_begin is in the body, after the early loads.
  const q4jit_decode::NewToken token{
      k, v, key_cache, value_cache, positions, max_positions, theta, rope_scale};
  q4jit_decode::attention_decode_body<kHeadDim, kSplit, kThreads, kHeadsPerBlock, true>(
      out, q, key_cache, value_cache, counters, partials, length_in, heads, kv_heads, scale,
      out_position, token);
}
