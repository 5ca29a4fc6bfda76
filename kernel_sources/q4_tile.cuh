// q4_tile_kernel: the q4_matmul family's tensor-core GEMV (configs with tc > 0), for M = 1 (more
// rows run as passes over the weights) or, with kRows = 8 or 16 (mb), that many x rows per pass
// in the mma's B columns (tile_rows: M from 2 to 16 at about the one-row cost). Included by
// q4_matmul.cu; same arguments and layout as q4_matmul_kernel, and the same fused entry as
// q4_stream.cuh (its inputs and outputs are reused from there; one row only). Needs mma.sync
// (sm_80+); never legal elsewhere.
//
// Work:      a block owns whole column tiles of 8 * kColumns columns, so no sum ever leaves the
//            block: its warps split the tile's K range in batches of kChunkRows packed rows and
//            reduce in shared memory. No workspace, counters or fences: the stream-K hand-on
//            those need costs about 2 us at the end of every launch on the H100.
// Dots:      lane = 4 g + t. For 4 packed rows at a time, the lane loads row (row0 + t) at
//            columns g * kColumns .. + kColumns - 1, and one m16n8k16 mma takes two of those
//            columns: A rows g and g + 8 are the two columns, A's k slots 2t, 2t+1 hold the
//            word's rows (2h, 2h + 4) and 2t+8, 2t+9 rows (2h + 1, 2h + 5) for half h; B's k
//            slots hold the matching x pairs of row row0 + t, every B column the same, so every
//            lane of a quad ends with its column pair's dot in D[0] and D[2]. A permutation of
//            k that is the same in A and B leaves the dot unchanged, and products and sums are
//            fp32: more accurate than the fp16 chains of the other kernels.
// Dequantize: kBiased = false: (q - z) exactly, as q4_dequant.cuh does. kBiased = true: the
//            masked word goes into A as it is (1024 + q for even nibbles, 1024 + 16 q for odd
//            ones, whose x enters B divided by 16), and a second mma with a constant A gives
//            the batch's S = sum of x and C = sum of the bias terms, so that the dot is
//            D - C - z S in fp32: 4 lop3 and one mma per packed word. The products are exact;
//            the fp32 sums carry a term up to 1024 times the activations (error about 1e-7 of
//            that per batch of 8 mma steps).
#pragma once

#include "portable.cuh"

#include "q4_dequant.cuh"
#include "q4_stream.cuh"
#include "q4jit_common.cuh"
#if Q4JIT_INLINE_PTX
#include "mma_common.cuh"
#endif

#if Q4JIT_INLINE_PTX && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
#define Q4JIT_TILE_MMA 1
#else
#define Q4JIT_TILE_MMA 0
#endif

namespace q4_tile_detail {

#if Q4JIT_TILE_MMA
using namespace q4jit_device;

// Where a lane works: lane = 4 g + t of warp `warp`, block `tile` owns column tile `tile`, the
// lane's word columns start at `column` (clamped: a partial last tile's lanes past N read real
// columns and store nothing), and the warp covers batches [batch_begin, batch_end) of the K range.
template <int kThreads, int kColumns, int kChunkRows, int kChunkGroups>
struct TileWork {
  static constexpr int kWarps = kThreads / 32;
  int g, t, warp, tile, column, batch_begin, batch_end, rows_per_group;

  __device__ __forceinline__ TileWork(int K, int N, int group_size)
      : g(threadIdx.x % 32 / 4),
        t(threadIdx.x % 4),
        warp(threadIdx.x / 32),
        tile(blockIdx.x),
        column(min(int(blockIdx.x) * 8 * kColumns + g * kColumns, N - kColumns)),
        rows_per_group(group_size / 8) {
    const int batches = K / 8 / kChunkRows;
    batch_begin = batches * warp / kWarps;
    batch_end = batches * (warp + 1) / kWarps;
  }
  // The group of the batch's first row.
  __device__ __forceinline__ int first_group(int batch) const {
    return kChunkGroups > 1 ? batch * kChunkGroups : batch * kChunkRows / rows_per_group;
  }
};

// The lane's words of each 4-row set of the batch at row0 (lane t loads row row0 + 4 s + t).
template <int kColumns, int kSets>
__device__ __forceinline__ void request_words(WeightWords<kColumns> (&words)[kSets],
                                              const unsigned* __restrict__ qweight, int N, int row0,
                                              int column) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int s = 0; s < kSets; ++s)
    words[s] = load_weight_words<kColumns>(qweight + size_t(row0 + 4 * s + t) * N + column);
}

// The zeros of group `group` from `column` on, the column's own in the low nibble.
__device__ __forceinline__ unsigned zero_word(const unsigned* __restrict__ qzeros, int N, int group,
                                              int column) {
  return __ldg(qzeros + size_t(group) * (N / 8) + column / 8) >> (4 * (column % 8));
}

// What one batch needs from memory besides x: the lane's words of each 4-row set, and per group
// of the batch the scale of the lane's own column and the zero word of its kColumns columns
// (only the own column's scale is ever used: fewer registers and no select).
template <int kColumns, int kChunkRows, int kGroups>
struct BatchLoads {
  static constexpr int kSets = kChunkRows / 4;
  WeightWords<kColumns> words[kSets];
  __half own_scales[kGroups];
  unsigned zero_words[kGroups];

  __device__ __forceinline__ void request(const unsigned* __restrict__ qweight,
                                          const __half* __restrict__ scales,
                                          const unsigned* __restrict__ qzeros, int N, int row0,
                                          int group, int column, int own) {
    request_words(words, qweight, N, row0, column);
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      own_scales[g] = scales[size_t(group + g) * N + column + own];
      zero_words[g] = zero_word(qzeros, N, group + g, column);
    }
  }
};

// The exact dequantize's two constants (q4_dequant.cuh) for each zero of the lane's kColumns
// columns in zero_word; the biased form needs none.
template <bool kBiased, int kColumns>
__device__ __forceinline__ void exact_zero_constants(unsigned zero_word,
                                                     __half2 (&low_zero)[kColumns],
                                                     __half2 (&high_zero)[kColumns]) {
  if constexpr (!kBiased) {
#pragma unroll
    for (int v = 0; v < kColumns; ++v) {
      const unsigned zero = ((zero_word >> (4 * v)) & 15u) + 1u;
      low_zero[v] = low_zero_of(zero);
      high_zero[v] = high_zero_of(zero);
    }
  }
}

// The A operand of column pair p (of the lane's kColumns) and half h of a set's words.
template <bool kBiased, int kColumns>
__device__ __forceinline__ void column_pair_operand(const WeightWords<kColumns>& words, int p,
                                                    int h, const __half2 (&low_zero)[kColumns],
                                                    const __half2 (&high_zero)[kColumns],
                                                    unsigned (&a)[4]) {
  const unsigned first = words.value[2 * p], second = words.value[2 * p + 1];
  if constexpr (kBiased) {
    const unsigned x0 = h ? first >> 8 : first, x1 = h ? second >> 8 : second;
    a[0] = and_or(x0, 0x000f000fu, 0x64006400u);
    a[2] = and_or(x0, 0x00f000f0u, 0x64006400u);
    a[1] = and_or(x1, 0x000f000fu, 0x64006400u);
    a[3] = and_or(x1, 0x00f000f0u, 0x64006400u);
  } else {
    __half2 w0[4], w1[4];
    dequantize_word(first, low_zero[2 * p], high_zero[2 * p], w0);
    dequantize_word(second, low_zero[2 * p + 1], high_zero[2 * p + 1], w1);
    a[0] = half2_bits(w0[2 * h]);
    a[2] = half2_bits(w0[2 * h + 1]);
    a[1] = half2_bits(w1[2 * h]);
    a[3] = half2_bits(w1[2 * h + 1]);
  }
}

// The constant A of the biased form: row g sums x as the dot sees it (S: odd pairs hold x / 16),
// row g + 8 sums B as it is (C / 1024).
__device__ __forceinline__ void bias_operand(unsigned (&a)[4]) {
  a[0] = 0x3c003c00u;  // (1, 1)
  a[1] = 0x3c003c00u;
  a[2] = 0x4c004c00u;  // (16, 16)
  a[3] = 0x3c003c00u;
}

// The group-scaled dot of the lane's own column (`own` of its kColumns) over sets [first, end)
// of the batch, all of one group.
template <bool kBiased, int kColumns, int kSets>
__device__ __forceinline__ float group_dot(const WeightWords<kColumns> (&words)[kSets],
                                           const __half2 (&pairs)[kSets][4], int first, int end,
                                           __half scale, unsigned zero_word, int own) {
  __half2 low_zero[kColumns], high_zero[kColumns];
  exact_zero_constants<kBiased>(zero_word, low_zero, high_zero);
  float d[kColumns / 2][4] = {};
  float bias[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  unsigned constant[4];
  bias_operand(constant);
#pragma unroll
  for (int s = first; s < end; ++s) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const unsigned b[2] = {half2_bits(pairs[s][2 * h]), half2_bits(pairs[s][2 * h + 1])};
      if constexpr (kBiased) mma_16816(bias, constant, b);
#pragma unroll
      for (int p = 0; p < kColumns / 2; ++p) {
        unsigned a[4];
        column_pair_operand<kBiased>(words[s], p, h, low_zero, high_zero, a);
        mma_16816(d[p], a, b);
      }
    }
  }
  // Explicit selects: an index by `own` would put d in local memory.
  const bool odd = own & 1;
  float dot = odd ? d[0][2] : d[0][0];
  if constexpr (kColumns == 4) dot = own >= 2 ? (odd ? d[1][2] : d[1][0]) : dot;
  if constexpr (kBiased) {
    const float zero = float(((zero_word >> (4 * own)) & 15u) + 1u);
    dot -= fmaf(zero, bias[0], 1024.0f * bias[2]);
  }
  return __half2float(scale) * dot;
}

// The multi-row form (kRows = 8 or 16 x rows per pass over the weights): B column n of block r
// carries x row pass + 8 r + n instead of every B column the same row, so the same A fragments
// (the same dequantize work per word) and, for 8 rows, the same mma count serve 8 rows. Lane
// (g, t) then holds, per column pair, the dots of both its columns with x rows 2t and 2t + 1 of
// each 8-row block, so it needs every one of its columns' scales, loaded as one vector.
template <int kColumns, int kChunkRows, int kGroups>
struct RowsBatchLoads {
  static constexpr int kSets = kChunkRows / 4;
  WeightWords<kColumns> words[kSets];
  unsigned scale_words[kGroups][kColumns / 2];  // the kColumns scales as half2 words
  unsigned zero_words[kGroups];

  __device__ __forceinline__ void request(const unsigned* __restrict__ qweight,
                                          const __half* __restrict__ scales,
                                          const unsigned* __restrict__ qzeros, int N, int row0,
                                          int group, int column) {
    request_words(words, qweight, N, row0, column);
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const __half* own = scales + size_t(group + g) * N + column;
      if constexpr (kColumns == 4) {
        const uint2 both = __ldg(reinterpret_cast<const uint2*>(own));
        scale_words[g][0] = both.x;
        scale_words[g][1] = both.y;
      } else {
        scale_words[g][0] = __ldg(reinterpret_cast<const unsigned*>(own));
      }
      zero_words[g] = zero_word(qzeros, N, group + g, column);
    }
  }
};

// group_dot for kBlocks 8-row blocks of x: adds the group-scaled dots of the lane's kColumns
// columns with its x rows (2t + i of each block) over sets [first, end) into sum[r][c][i].
template <bool kBiased, int kColumns, int kSets, int kBlocks>
__device__ __forceinline__ void group_dot_rows(float (&sum)[kBlocks][kColumns][2],
                                               const WeightWords<kColumns> (&words)[kSets],
                                               const __half2 (&pairs)[kBlocks][kSets][4], int first,
                                               int end, const unsigned (&scale_words)[kColumns / 2],
                                               unsigned zero_word) {
  __half2 low_zero[kColumns], high_zero[kColumns];
  exact_zero_constants<kBiased>(zero_word, low_zero, high_zero);
  float d[kBlocks][kColumns / 2][4] = {};
  float bias[kBlocks][4] = {};
  unsigned constant[4];
  bias_operand(constant);
#pragma unroll
  for (int s = first; s < end; ++s) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      unsigned b[kBlocks][2];
#pragma unroll
      for (int r = 0; r < kBlocks; ++r) {
        b[r][0] = half2_bits(pairs[r][s][2 * h]);
        b[r][1] = half2_bits(pairs[r][s][2 * h + 1]);
        if constexpr (kBiased) mma_16816(bias[r], constant, b[r]);
      }
#pragma unroll
      for (int p = 0; p < kColumns / 2; ++p) {
        unsigned a[4];
        column_pair_operand<kBiased>(words[s], p, h, low_zero, high_zero, a);
#pragma unroll
        for (int r = 0; r < kBlocks; ++r) mma_16816(d[r][p], a, b[r]);
      }
    }
  }
  // d[r][p]: (column 2p, row 2t), (2p, 2t + 1), (2p + 1, 2t), (2p + 1, 2t + 1).
#pragma unroll
  for (int c = 0; c < kColumns; ++c) {
    const unsigned pair_bits = scale_words[c / 2];
    const float scale = __half2float(
        __ushort_as_half(static_cast<unsigned short>(c % 2 ? pair_bits >> 16 : pair_bits)));
    const float zero = float(((zero_word >> (4 * c)) & 15u) + 1u);
#pragma unroll
    for (int r = 0; r < kBlocks; ++r) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float dot = d[r][c / 2][2 * (c % 2) + i];
        if constexpr (kBiased) dot -= fmaf(zero, bias[r][i], 1024.0f * bias[r][2 + i]);
        sum[r][c][i] = fmaf(scale, dot, sum[r][c][i]);
      }
    }
  }
}

// The multi-row body's per-warp partials: one array per kernel, whichever tile_rows (with or
// without the gather) uses it (a __shared__ variable of a device function is static).
template <int kWarps, int kRows, int kTileColumns>
__device__ __forceinline__ float (&rows_partials())[kWarps][kRows][kTileColumns] {
  __shared__ float partial[kWarps][kRows][kTileColumns];
  return partial;
}

// The multi-row kernel body: kRows x rows per pass (passes of kRows while rows remain), x read
// directly (or gathered through x_map), the same batches and block reduction as tile().
template <int kThreads, int kColumns, int kChunkRows, int kChunkGroups, bool kBiased, int kRows,
          bool kGather>
__device__ __forceinline__ void tile_rows(__half* __restrict__ out, const __half* __restrict__ x,
                                          const int* __restrict__ x_map,
                                          const unsigned* __restrict__ qweight,
                                          const __half* __restrict__ scales,
                                          const unsigned* __restrict__ qzeros, int M, int K, int N,
                                          int group_size) {
  constexpr int kBlocks = kRows / 8;
  constexpr int kWarps = kThreads / 32;
  constexpr int kSets = kChunkRows / 4;
  constexpr int kTileColumns = 8 * kColumns;
  constexpr int kGroupSets = kSets / kChunkGroups;
  static_assert(kSets % kChunkGroups == 0, "whole 4-row sets per group");
  static_assert(kWarps * kRows * kTileColumns * 4 <= 48 * 1024, "partials in static shared memory");
  float(&partial)[kWarps][kRows][kTileColumns] = rows_partials<kWarps, kRows, kTileColumns>();
  const TileWork<kThreads, kColumns, kChunkRows, kChunkGroups> work(K, N, group_size);
  const int g = work.g, t = work.t, warp = work.warp, tile = work.tile;

  RowsBatchLoads<kColumns, kChunkRows, kChunkGroups> loads;
  bool preloaded = work.batch_begin < work.batch_end;
  if (preloaded)
    loads.request(qweight, scales, qzeros, N, work.batch_begin * kChunkRows,
                  work.first_group(work.batch_begin), work.column);
  grid_dependency_begin();

  for (int m0 = 0; m0 < M; m0 += kRows) {
    float sum[kBlocks][kColumns][2] = {};
    for (int batch = work.batch_begin; batch < work.batch_end; ++batch) {
      const int row0 = batch * kChunkRows;
      if (!preloaded)
        loads.request(qweight, scales, qzeros, N, row0, work.first_group(batch), work.column);
      preloaded = false;
      __half2 pairs[kBlocks][kSets][4];
#pragma unroll
      for (int r = 0; r < kBlocks; ++r) {
        const int m = m0 + 8 * r + g;
#pragma unroll
        for (int s = 0; s < kSets; ++s) {
          if (m < M) {
            q4_stream_detail::load_pairs<kGather>(x, x_map, K, m, row0 + 4 * s + t, pairs[r][s]);
          } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) pairs[r][s][j] = __float2half2_rn(0.0f);
          }
          if constexpr (kBiased) {  // odd pairs meet 1024 + 16 q
            const __half2 sixteenth = __half2half2(__ushort_as_half(0x2c00));
            pairs[r][s][1] = __hmul2(pairs[r][s][1], sixteenth);
            pairs[r][s][3] = __hmul2(pairs[r][s][3], sixteenth);
          }
        }
      }
#pragma unroll
      for (int gi = 0; gi < kChunkGroups; ++gi)
        group_dot_rows<kBiased>(sum, loads.words, pairs, gi * kGroupSets, (gi + 1) * kGroupSets,
                                loads.scale_words[gi], loads.zero_words[gi]);
    }
#pragma unroll
    for (int r = 0; r < kBlocks; ++r)
#pragma unroll
      for (int c = 0; c < kColumns; ++c)
#pragma unroll
        for (int i = 0; i < 2; ++i)
          partial[warp][8 * r + 2 * t + i][g * kColumns + c] = sum[r][c][i];
    __syncthreads();
    for (int i = threadIdx.x; i < kRows * kTileColumns; i += kThreads) {
      const int row = i / kTileColumns, local = i % kTileColumns;
      const int m = m0 + row, n = tile * kTileColumns + local;
      if (m >= M || n >= N) continue;
      float total = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) total += partial[w][row][local];
      out[size_t(m) * N + n] = __float2half_rn(total);
    }
    __syncthreads();  // partial is free for the next pass
  }
}

// The kernel body: pass m (x row m) at a time, the block's warps split the tile's batches, then
// sum in shared memory and hand each column's total to the output. The warp's first batch is
// requested before the grid dependency wait (weights, scales and zeros are never written).
template <int kThreads, int kColumns, int kChunkRows, int kChunkGroups, bool kBiased, class Input,
          class Output>
__device__ __forceinline__ void tile(const Output& output, Input input,
                                     const unsigned* __restrict__ qweight,
                                     const __half* __restrict__ scales,
                                     const unsigned* __restrict__ qzeros, int M, int K, int N,
                                     int group_size) {
  constexpr int kWarps = kThreads / 32;
  constexpr int kSets = kChunkRows / 4;
  constexpr int kTileColumns = 8 * kColumns;
  constexpr int kGroupSets = kSets / kChunkGroups;
  static_assert(kSets % kChunkGroups == 0, "whole 4-row sets per group");
  __shared__ float partial[kWarps][kTileColumns];
  const TileWork<kThreads, kColumns, kChunkRows, kChunkGroups> work(K, N, group_size);
  const int g = work.g, t = work.t, warp = work.warp, tile = work.tile;
  const int own = t % kColumns;  // the column of the lane's kColumns that this lane keeps

  BatchLoads<kColumns, kChunkRows, kChunkGroups> loads;
  bool preloaded = work.batch_begin < work.batch_end;
  if (preloaded)
    loads.request(qweight, scales, qzeros, N, work.batch_begin * kChunkRows,
                  work.first_group(work.batch_begin), work.column, own);
  grid_dependency_begin();
  input.template prepare<kThreads>();

  for (int m = 0; m < M; ++m) {
    float sum = 0.0f;
    for (int batch = work.batch_begin; batch < work.batch_end; ++batch) {
      const int row0 = batch * kChunkRows;
      if (!preloaded)
        loads.request(qweight, scales, qzeros, N, row0, work.first_group(batch), work.column, own);
      preloaded = false;
      input.begin_chunk(row0);
      __half2 pairs[kSets][4];
#pragma unroll
      for (int s = 0; s < kSets; ++s) {
        input.pairs(m, row0 + 4 * s + t, 4 * s + t, pairs[s]);
        if constexpr (kBiased) {  // odd pairs meet 1024 + 16 q
          const __half2 sixteenth = __half2half2(__ushort_as_half(0x2c00));
          pairs[s][1] = __hmul2(pairs[s][1], sixteenth);
          pairs[s][3] = __hmul2(pairs[s][3], sixteenth);
        }
      }
#pragma unroll
      for (int gi = 0; gi < kChunkGroups; ++gi)
        sum += group_dot<kBiased>(loads.words, pairs, gi * kGroupSets, (gi + 1) * kGroupSets,
                                  loads.own_scales[gi], loads.zero_words[gi], own);
    }
    if (t < kColumns) partial[warp][g * kColumns + own] = sum;
    __syncthreads();
    if (threadIdx.x < kTileColumns && tile * kTileColumns + int(threadIdx.x) < N) {
      float total = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) total += partial[w][threadIdx.x];
      output.store(size_t(m) * N + tile * kTileColumns + threadIdx.x, total);
    }
    __syncthreads();  // partial is free for the next pass
  }
}
#endif  // Q4JIT_TILE_MMA

__device__ __forceinline__ void unsupported() {
#if Q4JIT_HIP
  __builtin_trap();
#else
  __trap();
#endif
}

}  // namespace q4_tile_detail

// One block per column tile of 8 * kColumns columns. kColumns: 2 or 4 (64- or 128-bit loads);
// kChunkRows: 4 to 32 packed rows per batch, dividing a group, or kChunkGroups whole groups;
// kRows: x rows per pass, 1 (every B column the same row) or 8, 16 (tile_rows).
template <int kThreads = 256, int kColumns = 4, int kChunkRows = 16, int kChunkGroups = 1,
          bool kBiased = true, int kBlocksPerSm = 1, int kRows = 1>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    q4_tile_kernel(__half* __restrict__ out, float* __restrict__ /*workspace*/,
                   unsigned* __restrict__ /*tile_counters*/, const __half* __restrict__ x,
                   const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                   const __half* __restrict__ scales, const unsigned* __restrict__ qzeros, int M,
                   int K, int N, int group_size) {
  static_assert(kThreads >= 64 && kThreads <= 1024 && kThreads % 32 == 0, "kThreads: 64..1024");
  static_assert(kColumns == 2 || kColumns == 4, "kColumns: 2 or 4");
  static_assert(kChunkRows == 4 || kChunkRows == 8 || kChunkRows == 16 || kChunkRows == 32,
                "kChunkRows: 4, 8, 16, 32");
  static_assert(kChunkGroups == 1 || kChunkGroups == 2 || kChunkGroups == 4,
                "kChunkGroups: 1, 2, 4");
  static_assert(kRows == 1 || kRows == 8 || kRows == 16, "kRows: 1, 8, 16");
#if Q4JIT_TILE_MMA
  using namespace q4_tile_detail;
  using q4_stream_detail::DirectInput;
  using q4_stream_detail::DirectOutput;
  if constexpr (kRows > 1) {
    if (x_map != nullptr) {
      tile_rows<kThreads, kColumns, kChunkRows, kChunkGroups, kBiased, kRows, true>(
          out, x, x_map, qweight, scales, qzeros, M, K, N, group_size);
    } else {
      tile_rows<kThreads, kColumns, kChunkRows, kChunkGroups, kBiased, kRows, false>(
          out, x, x_map, qweight, scales, qzeros, M, K, N, group_size);
    }
  } else if (x_map != nullptr) {
    tile<kThreads, kColumns, kChunkRows, kChunkGroups, kBiased>(
        DirectOutput{out}, DirectInput<true>{x, x_map, K}, qweight, scales, qzeros, M, K, N,
        group_size);
  } else {
    tile<kThreads, kColumns, kChunkRows, kChunkGroups, kBiased>(
        DirectOutput{out}, DirectInput<false>{x, x_map, K}, qweight, scales, qzeros, M, K, N,
        group_size);
  }
#else
  q4_tile_detail::unsupported();
#endif
}

// q4_tile_kernel for one token with its neighbours fused, as q4_stream_fused_kernel does (same
// Q4StreamFusion, inputs and outputs; see there).
template <int kThreads = 256, int kColumns = 4, int kChunkRows = 16, int kChunkGroups = 1,
          bool kBiased = true, int kBlocksPerSm = 1, int kInput = kStreamInputNorm,
          bool kResidual = false>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    q4_tile_fused_kernel(__half* __restrict__ out, float* __restrict__ /*workspace*/,
                         unsigned* __restrict__ /*tile_counters*/, const __half* __restrict__ x,
                         const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                         const __half* __restrict__ scales, const unsigned* __restrict__ qzeros,
                         int M, int K, int N, int group_size, Q4StreamFusion fusion) {
  static_assert(kInput >= kStreamInputDirect && kInput <= kStreamInputSilu, "kInput: 0, 1, 2");
#if Q4JIT_TILE_MMA
  using namespace q4_tile_detail;
  using namespace q4_stream_detail;
  __shared__ __align__(16) __half staged[kThreads / 32][kChunkRows * 8];
  __half* warp_staged = staged[threadIdx.x / 32];
  with_fused_input<kChunkRows, kInput>(
      [&](const auto& input) {
        with_fused_output<kResidual>(
            [&](const auto& output) {
              tile<kThreads, kColumns, kChunkRows, kChunkGroups, kBiased>(
                  output, input, qweight, scales, qzeros, M, K, N, group_size);
            },
            out, fusion);
      },
      warp_staged, x, x_map, K, fusion);
#else
  q4_tile_detail::unsupported();
#endif
}
