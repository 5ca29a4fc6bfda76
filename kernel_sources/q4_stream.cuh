// q4_stream_kernel: the stream-K GEMV of the q4_matmul family (configs with sr > 0), for M = 1
// to a few rows, where the weight stream alone sets the time. Included by q4_matmul.cu; same
// arguments, layout and workspace contract as q4_matmul_kernel (see there). Not here: the block
// kernel with shared-memory staging and two-pass reduction.
//
// Work:      the weights as tiles x chunks (tile = 32 * kColumns columns, one warp wide; chunk =
//            kChunkRows packed rows, which divide a group, or with kChunkGroups > 1 are exactly
//            that many whole groups of at least 4 rows: legal() checks), flattened tile-major
//            and cut into one equal contiguous range of chunks per warp of the persistent grid,
//            so every warp streams the same bytes. Per chunk a warp issues all its weight loads,
//            the group's scales and zeros and the chunk's x (through L1, or gathered via x_map)
//            at once, then uses them; occupancy hides the latency. The first chunk's weights,
//            scales and zeros are requested before the grid dependency wait (no kernel writes
//            them), so under programmatic dependent launch their latency overlaps the previous
//            kernel's tail and a fused norm's prologue. The loop has no bounds checks
//            (a partial last tile reads clamped columns and stores nothing for them), no block
//            barriers and no shared memory, so the instructions per weight word stay few.
// Hand-on:   a warp that covered a whole tile stores fp16 out directly; otherwise it adds its
//            sums to the fp32 workspace (atomics), fences, and adds its chunk count to the tile's
//            counter; the warp that completes the count (all passes) writes the tile's fp16 out
//            and leaves workspace and counter zero again: one launch, no memset.
#pragma once

#include "portable.cuh"

#include "q4_dequant.cuh"
#include "q4jit_common.cuh"

namespace q4_stream_detail {

// The pairs of packed row `row` of x row `m_row` (as dot_word expects), from x directly or
// gathered through x_map.
template <bool kGather>
__device__ __forceinline__ void load_pairs(const __half* __restrict__ x,
                                           const int* __restrict__ x_map, int K, int m_row, int row,
                                           __half2 (&pairs)[4]) {
  const __half* x_row = x + size_t(m_row) * K;
  if constexpr (kGather) {
    const int4 low = __ldg(reinterpret_cast<const int4*>(x_map + row * 8));
    const int4 high = __ldg(reinterpret_cast<const int4*>(x_map + row * 8 + 4));
    const __half values[8] = {x_row[low.x],  x_row[low.y],  x_row[low.z],  x_row[low.w],
                              x_row[high.x], x_row[high.y], x_row[high.z], x_row[high.w]};
    q4jit_device::pair_activations(values, pairs);
  } else {
    q4jit_device::pair_activations(__ldg(reinterpret_cast<const uint4*>(x_row + row * 8)), pairs);
  }
}

// Where the loop's activations come from. An Input gives, per chunk (begin_chunk, once, with
// the whole warp) and then per packed row b of it, the four x pairs dot_word expects; kUpFront:
// the loop requests the chunk's rows all at once (direct loads) rather than row by row.
// x read as it is, or gathered through x_map (two dependent loads per row).
template <bool kGather>
struct DirectInput {
  static constexpr bool kUpFront = !kGather;
  const __half* x;
  const int* x_map;
  int K;
  template <int kThreads>
  __device__ __forceinline__ void prepare() {}
  __device__ __forceinline__ void begin_chunk(int /*row0*/) const {}
  __device__ __forceinline__ void pairs(int m_row, int row, int /*b*/, __half2 (&p)[4]) const {
    load_pairs<kGather>(x, x_map, K, m_row, row, p);
  }
};

// One x row (M = 1) computed from the producers' outputs as the chunk needs it: the warp's lanes
// compute the chunk's kChunkRows * 8 values together (Compute::values, kChunkRows / 4 each) into
// the warp's staging row in shared memory, then every lane reads the rows back. Each value is
// computed once per warp, not once per lane, so the fused arithmetic (an expf, a gather) stays
// small beside the weight words.
template <int kChunkRows, class Compute>
struct StagedInput {
  static constexpr bool kUpFront = false;
  static constexpr int kPerLane = kChunkRows * 8 / 32;
  __half* staged;  // this warp's kChunkRows * 8 halves, 16-byte aligned
  Compute compute;
  template <int kThreads>
  __device__ __forceinline__ void prepare() {
    compute.template prepare<kThreads>();
  }
  __device__ __forceinline__ void begin_chunk(int row0) {
    const int lane = threadIdx.x % 32;
    __syncwarp();  // the previous chunk's rows are read
    compute.template values<kPerLane>(row0 * 8 + lane * kPerLane, staged + lane * kPerLane);
    __syncwarp();
  }
  __device__ __forceinline__ void pairs(int /*m_row*/, int /*row*/, int b, __half2 (&p)[4]) const {
    q4jit_device::pair_activations(*reinterpret_cast<const uint4*>(staged + b * 8), p);
  }
};

// 1 / rms of row 0 of x (+ delta), K values (K % 8 == 0), with the whole block: every block of
// a fused norm computes it (K is a hidden row: a few KB from L2), so no launch sits between.
template <int kThreads>
__device__ __forceinline__ float inverse_rms_of(const __half* x, const __half* delta, int K,
                                                float eps) {
  using Vector = q4jit_device::HalfVector<8>;
  float sum = 0.0f;
#pragma unroll 4  // a 4096 row at 128 threads: every load in flight at once
  for (int i = threadIdx.x * 8; i < K; i += kThreads * 8) {
    Vector v = *reinterpret_cast<const Vector*>(x + i);
    if (delta != nullptr) {
      const Vector d = *reinterpret_cast<const Vector*>(delta + i);
#pragma unroll
      for (int j = 0; j < 8; ++j) v.value[j] = q4jit_device::add_rounded(v.value[j], d.value[j]);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) sum += __half2float(v.value[j]) * __half2float(v.value[j]);
  }
  return rsqrtf(q4jit_device::block_sum<kThreads>(sum) / K + eps);
}

// x = rms_norm(producer + delta) * weight, in the weights' row order (through x_map when the
// weights are act-order sorted): the add_rms_norm kernel's arithmetic, without its write-back.
// Gathering, a lane requests the x_map entries of its values in the warp's next chunk (the next
// one of the tile) while this chunk's values load, so that a chunk waits on one L2 round trip
// (the values) rather than two (x_map, then the values); at a tile's end the guess misses and
// the entries load in the chunk that needs them.
template <bool kGather, int kPerLane>
struct NormCompute {
  const __half* x;
  const __half* delta;  // or null
  const __half* weight;
  const int* x_map;
  int K;
  float eps;
  float inverse_rms = 0.0f;  // prepare(): after the producer's row is complete
  int next_first = -1;       // kGather: whose x_map entries next_source holds
  int next_source[kPerLane];
  template <int kThreads>
  __device__ __forceinline__ void prepare() {
    inverse_rms = inverse_rms_of<kThreads>(x, delta, K, eps);
  }
  template <int kCount>
  __device__ __forceinline__ void values(int first, __half* out) {
    static_assert(kCount == kPerLane, "one lane's share of a chunk");
    using Vector = q4jit_device::HalfVector<kCount>;
    int source[kCount];
    const bool prefetched = first == next_first;
#pragma unroll
    for (int j = 0; j < kCount; ++j) {
      if constexpr (kGather) {
        source[j] = prefetched ? next_source[j] : __ldg(x_map + first + j);
      } else {
        source[j] = first + j;
      }
    }
    __half v[kCount], d[kCount], w[kCount];
#pragma unroll
    for (int j = 0; j < kCount; ++j) {
      v[j] = x[source[j]];
      d[j] = delta != nullptr ? delta[source[j]] : __ushort_as_half(0);
      w[j] = weight[source[j]];
    }
    if constexpr (kGather) {
      next_first = first + 32 * kCount;  // this lane's values in the next chunk
      if (next_first < K) {
#pragma unroll
        for (int j = 0; j < kCount; ++j) next_source[j] = __ldg(x_map + next_first + j);
      }
    }
    Vector result;
#pragma unroll
    for (int j = 0; j < kCount; ++j) {
      const __half sum = delta != nullptr ? q4jit_device::add_rounded(v[j], d[j]) : v[j];
      result.value[j] = q4jit_device::rms_normalize(sum, w[j], inverse_rms);
    }
    *reinterpret_cast<Vector*>(out) = result;
  }
};

// x = silu(gate) * up (the MLP's hidden row, already in the weights' row order).
struct SiluCompute {
  const __half* gate;
  const __half* up;
  template <int kThreads>
  __device__ __forceinline__ void prepare() {}
  template <int kCount>
  __device__ __forceinline__ void values(int first, __half* out) {
    using Vector = q4jit_device::HalfVector<kCount>;
    const Vector g = *reinterpret_cast<const Vector*>(gate + first);
    const Vector u = *reinterpret_cast<const Vector*>(up + first);
    Vector result;
#pragma unroll
    for (int j = 0; j < kCount; ++j)
      result.value[j] = q4jit_device::silu_mul_value(g.value[j], u.value[j]);
    *reinterpret_cast<Vector*>(out) = result;
  }
};

// Where finished sums go: out[index] = half(sum), or into the residual row:
// residual[index] = half(half(residual + delta) + half(sum)), the two residual adds of a layer
// (the pending delta of an earlier projection, then this one's) in the unfused kernels' order.
// The residual value may also go to sorted_copy[sorted_position[index]]: the next projection's
// act-order row order, so that its fused norm reads the row in order instead of through x_map.
struct DirectOutput {
  __half* out;
  __device__ __forceinline__ void store(size_t index, float sum) const {
    out[index] = __float2half_rn(sum);
  }
};
struct ResidualOutput {
  __half* residual;
  const __half* delta;         // or null
  __half* sorted_copy;         // or null
  const int* sorted_position;  // with sorted_copy: original index -> sorted row
  __device__ __forceinline__ void store(size_t index, float sum) const {
    __half value = residual[index];
    if (delta != nullptr) value = q4jit_device::add_rounded(value, delta[index]);
    value = q4jit_device::add_rounded(value, __float2half_rn(sum));
    residual[index] = value;
    if (sorted_copy != nullptr) sorted_copy[sorted_position[index]] = value;
  }
};

// What one chunk needs from memory besides x: its weight words and the scales and zeros of its
// kGroups groups (one, or each of the chunk's whole groups).
template <int kVector, int kLoads, int kChunkRows, int kGroups>
struct ChunkLoads {
  q4jit_device::WeightWords<kVector> words[kChunkRows][kLoads];
  q4jit_device::HalfVector<kVector> group_scales[kGroups][kLoads];
  unsigned zero_words[kGroups][kLoads];

  // Requests all of it at once (chunk `chunk`, first group `group`, the lanes' columns).
  __device__ __forceinline__ void request(const unsigned* __restrict__ qweight,
                                          const __half* __restrict__ scales,
                                          const unsigned* __restrict__ qzeros, int N, int chunk,
                                          int group, const int (&column)[kLoads]) {
    const unsigned* weights = qweight + size_t(chunk) * kChunkRows * N;
#pragma unroll
    for (int b = 0; b < kChunkRows; ++b) {
#pragma unroll
      for (int l = 0; l < kLoads; ++l)
        words[b][l] = q4jit_device::load_weight_words<kVector>(weights + size_t(b) * N + column[l]);
    }
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
#pragma unroll
      for (int l = 0; l < kLoads; ++l) {
        group_scales[g][l] = *reinterpret_cast<const q4jit_device::HalfVector<kVector>*>(
            scales + size_t(group + g) * N + column[l]);
        zero_words[g][l] =
            __ldg(qzeros + size_t(group + g) * (N / 8) + column[l] / 8) >> (4 * (column[l] % 8));
      }
    }
  }
};

// The lanes' columns of `tile`: load l covers column[l] .. + kVector - 1, kept inside the matrix
// (a partial last tile reads clamped columns and `stored` says which to write).
template <int kVector, int kLoads>
__device__ __forceinline__ void tile_columns(int tile, int N, int (&column)[kLoads],
                                             bool (&stored)[kLoads]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int l = 0; l < kLoads; ++l) {
    const int wanted = tile * (32 * kLoads * kVector) + l * 32 * kVector + lane * kVector;
    stored[l] = wanted < N;
    column[l] = min(wanted, N - kVector);
  }
}

// The loop. The warp's first chunk is requested before the grid dependency wait (weights, scales
// and zeros are never written by a kernel), so its latency overlaps the previous kernel's tail
// and the input's prepare() (a fused norm's sum of squares) instead of following them.
template <int kThreads, int kColumns, int kLoadBits, int kRowsM, bool kHalfAccumulate,
          int kChunkRows, int kChunkGroups, class Input, class Output>
__device__ __forceinline__ void stream(const Output& output, float* __restrict__ workspace,
                                       unsigned* __restrict__ tile_counters, Input input,
                                       const unsigned* __restrict__ qweight,
                                       const __half* __restrict__ scales,
                                       const unsigned* __restrict__ qzeros, int M, int K, int N,
                                       int group_size) {
  using namespace q4jit_device;
  using Accumulator = q4jit_device::Accumulator<kHalfAccumulate>;
  constexpr int kWarps = kThreads / 32;
  constexpr int kVector = kLoadBits / 32;      // adjacent columns per load
  constexpr int kLoads = kColumns / kVector;   // loads per packed row
  constexpr int kTileColumns = 32 * kColumns;  // columns per warp
  // fp16 running dots span this many packed words (16 products per lane) before fp32.
  constexpr int kChainWords = 4;
  // A chain never straddles a group: kChunkGroups > 1 only with groups of >= kChainWords rows.
  constexpr int kGroupRows = kChunkRows / kChunkGroups;
  static_assert(kChunkGroups == 1 || kGroupRows % kChainWords == 0, "whole chains per group");

  const int lane = threadIdx.x % 32;
  const long long warp = (long long)blockIdx.x * kWarps + threadIdx.x / 32;
  const long long warps = (long long)gridDim.x * kWarps;
  const int rows_per_group = group_size / 8;
  const int tile_chunks = K / 8 / kChunkRows;
  const int tiles = (N + kTileColumns - 1) / kTileColumns;
  const long long total = (long long)tiles * tile_chunks;
  const long long range_begin = total * warp / warps, range_end = total * (warp + 1) / warps;
  const int passes = (M + kRowsM - 1) / kRowsM;
  const unsigned tile_total = unsigned(passes) * unsigned(tile_chunks);  // counter when complete

  ChunkLoads<kVector, kLoads, kChunkRows, kChunkGroups> loads;
  bool preloaded = range_begin < range_end;
  if (preloaded) {
    int column[kLoads];
    bool stored[kLoads];
    tile_columns<kVector>(int(range_begin / tile_chunks), N, column, stored);
    const int chunk = int(range_begin % tile_chunks);
    loads.request(qweight, scales, qzeros, N, chunk, chunk * kChunkRows / rows_per_group, column);
  }
  q4jit_device::grid_dependency_begin();
  input.template prepare<kThreads>();

  for (long long at = range_begin; at < range_end;) {
    const int tile = int(at / tile_chunks);
    const int chunk_begin = int(at % tile_chunks);
    const int chunk_end = int(min((long long)tile_chunks, chunk_begin + (range_end - at)));
    at += chunk_end - chunk_begin;
    int column[kLoads];
    bool stored[kLoads];
    tile_columns<kVector>(tile, N, column, stored);

    for (int pass = 0; pass < passes; ++pass) {
      const int m0 = pass * kRowsM;
      const int rows_m = min(kRowsM, M - m0);
      Accumulator acc[kRowsM][kColumns];
      int group = chunk_begin * kChunkRows / rows_per_group;
      int group_end = (group + 1) * rows_per_group;  // first packed row past the group
      for (int chunk = chunk_begin; chunk < chunk_end; ++chunk) {
        const int row0 = chunk * kChunkRows;
        if constexpr (kChunkGroups > 1) {
          group = chunk * kChunkGroups;  // a chunk is exactly kChunkGroups groups
        } else if (row0 >= group_end) {  // chunks divide groups: at most one step
          ++group;
          group_end += rows_per_group;
        }
        // Everything the chunk needs is requested before any of it is used.
        if (!preloaded) loads.request(qweight, scales, qzeros, N, chunk, group, column);
        preloaded = false;
        const auto& words = loads.words;
        const auto& group_scales = loads.group_scales;
        const auto& zero_words = loads.zero_words;
        // x of row b for pass row m (zero past M): the whole chunk's up front when read
        // directly; a gather (two dependent loads) waits until its row is used, in fewer
        // registers.
        input.begin_chunk(row0);
        auto activations_of = [&](int b, int m, __half2(&pairs)[4]) {
          input.pairs(m0 + min(m, rows_m - 1), row0 + b, b, pairs);
          if (m > 0 && m >= rows_m) {  // rows_m >= 1: never for m = 0
#pragma unroll
            for (int j = 0; j < 4; ++j) pairs[j] = __half2half2(__ushort_as_half(0));
          }
        };
        __half2 activations[Input::kUpFront ? kChunkRows : 1][kRowsM][4];
        if constexpr (Input::kUpFront) {
#pragma unroll
          for (int b = 0; b < kChunkRows; ++b) {
#pragma unroll
            for (int m = 0; m < kRowsM; ++m) activations_of(b, m, activations[b][m]);
          }
        }

        __half scale[kColumns];
        __half2 low_zero[kColumns], high_zero[kColumns];
        // The dequantize constants of group g of the chunk (once per chunk with one group).
        auto group_constants = [&](int g) {
#pragma unroll
          for (int l = 0; l < kLoads; ++l) {
#pragma unroll
            for (int v = 0; v < kVector; ++v) {
              const unsigned zero = ((zero_words[g][l] >> (4 * v)) & 15u) + 1u;
              scale[l * kVector + v] = group_scales[g][l].value[v];
              low_zero[l * kVector + v] = low_zero_of(zero);
              high_zero[l * kVector + v] = high_zero_of(zero);
            }
          }
        };
        if constexpr (kChunkGroups == 1) group_constants(0);
#pragma unroll
        for (int first = 0; first < kChunkRows; first += kChainWords) {
          if constexpr (kChunkGroups > 1) {
            if (first % kGroupRows == 0) group_constants(first / kGroupRows);
          }
          __half2 chain[kRowsM][kColumns];
#pragma unroll
          for (int m = 0; m < kRowsM; ++m) {
#pragma unroll
            for (int c = 0; c < kColumns; ++c) chain[m][c] = __half2half2(__ushort_as_half(0));
          }
#pragma unroll
          for (int b = first; b < first + kChainWords; ++b) {
            if constexpr (!Input::kUpFront) {
#pragma unroll
              for (int m = 0; m < kRowsM; ++m) activations_of(b, m, activations[0][m]);
            }
            const auto& row_activations = activations[Input::kUpFront ? b : 0];
#pragma unroll
            for (int l = 0; l < kLoads; ++l) {
#pragma unroll
              for (int v = 0; v < kVector; ++v) {
                const int c = l * kVector + v;
                __half2 w[4];
                dequantize_word(words[b][l].value[v], low_zero[c], high_zero[c], w);
#pragma unroll
                for (int m = 0; m < kRowsM; ++m)
                  chain[m][c] = dot_word(w, row_activations[m], chain[m][c]);
              }
            }
          }
#pragma unroll
          for (int m = 0; m < kRowsM; ++m) {
#pragma unroll
            for (int c = 0; c < kColumns; ++c) acc[m][c].add(scale[c], chain[m][c]);
          }
        }
      }

      if (chunk_begin == 0 && chunk_end == tile_chunks) {  // the whole tile: no hand-on
#pragma unroll
        for (int m = 0; m < kRowsM; ++m) {
#pragma unroll
          for (int c = 0; c < kColumns; ++c) {
            if (m < rows_m && stored[c / kVector])
              output.store(size_t(m0 + m) * N + column[c / kVector] + c % kVector,
                           acc[m][c].total());
          }
        }
        continue;
      }
#pragma unroll
      for (int m = 0; m < kRowsM; ++m) {
#pragma unroll
        for (int c = 0; c < kColumns; ++c) {
          if (m < rows_m && stored[c / kVector])
            atomicAdd(workspace + size_t(m0 + m) * N + column[c / kVector] + c % kVector,
                      acc[m][c].total());
        }
      }
      // Every lane fences its own adds before lane 0 counts them (threadFenceReduction).
      __threadfence();
      __syncwarp();
      const unsigned chunks = unsigned(chunk_end - chunk_begin);
      unsigned before = 0;
      if (lane == 0) before = atomicAdd(tile_counters + tile, chunks);
      before = __shfl_sync(0xffffffffu, before, 0);
      if (before + chunks == tile_total) {  // warp-uniform: this warp completes the tile
        __threadfence();
        for (int i = lane; i < M * kTileColumns; i += 32) {
          const int column_i = tile * kTileColumns + i % kTileColumns;
          if (column_i >= N) continue;
          const size_t index = size_t(i / kTileColumns) * N + column_i;
          const float sum = __ldcg(workspace + index);
          __stcg(workspace + index, 0.0f);
          output.store(index, sum);
        }
        if (lane == 0) tile_counters[tile] = 0;
      }
    }
  }
}

// Asks L2 for the first of this warp's weight chunks (up to an equal share of kPrefetchBytes over
// the grid), before the kernel waits for the previous one: weights are never written by an
// earlier kernel, so under programmatic dependent launch they stream in while that kernel (a norm,
// RoPE, attention, SiLU: little memory traffic) still runs. One prefetch per 128-byte line,
// spread over the lanes; columns clamped inside the row.
template <int kThreads, int kColumns, int kChunkRows>
__device__ __forceinline__ void prefetch_first_chunks(const unsigned* __restrict__ qweight, int K,
                                                      int N) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr long long kPrefetchBytes = 24ll << 20;  // about half the H100's L2
  constexpr int kWarps = kThreads / 32;
  constexpr int kTileColumns = 32 * kColumns;
  constexpr int kLinesPerRow = kTileColumns * 4 / 128;
  constexpr int kLinesPerChunk = kLinesPerRow * kChunkRows;
  const int lane = threadIdx.x % 32;
  const long long warp = (long long)blockIdx.x * kWarps + threadIdx.x / 32;
  const long long warps = (long long)gridDim.x * kWarps;
  const int tile_chunks = K / 8 / kChunkRows;
  const int tiles = (N + kTileColumns - 1) / kTileColumns;
  const long long total = (long long)tiles * tile_chunks;
  const long long range_begin = total * warp / warps, range_end = total * (warp + 1) / warps;
  const long long share = max(1ll, kPrefetchBytes / (warps * kLinesPerChunk * 128));
  const long long end = min(range_end, range_begin + share);
  const int last_line_column = max(0, N - 32);  // a 128-byte line holds 32 words
  for (long long at = range_begin; at < end; ++at) {
    const int tile = int(at / tile_chunks), row0 = int(at % tile_chunks) * kChunkRows;
    for (int line = lane; line < kLinesPerChunk; line += 32) {
      const int row = row0 + line / kLinesPerRow;
      const int column = min(tile * kTileColumns + (line % kLinesPerRow) * 32, last_line_column);
      q4jit_device::prefetch_l2(qweight + size_t(row) * N + column);
    }
  }
#endif
}

}  // namespace q4_stream_detail

template <int kThreads = 128, int kColumns = 4, int kLoadBits = 128, int kRowsM = 1,
          bool kHalfAccumulate = false, int kChunkRows = 8, int kBlocksPerSm = 4,
          int kChunkGroups = 1>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    q4_stream_kernel(__half* __restrict__ out, float* __restrict__ workspace,
                     unsigned* __restrict__ tile_counters, const __half* __restrict__ x,
                     const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                     const __half* __restrict__ scales, const unsigned* __restrict__ qzeros, int M,
                     int K, int N, int group_size) {
  q4_stream_detail::prefetch_first_chunks<kThreads, kColumns, kChunkRows>(qweight, K, N);
  static_assert(kThreads == 64 || kThreads == 128 || kThreads == 256, "kThreads: 64, 128, 256");
  static_assert(kColumns == 2 || kColumns == 4 || kColumns == 8, "kColumns: 2, 4 or 8");
  static_assert(kLoadBits == 64 || kLoadBits == 128, "kLoadBits: 64 or 128");
  static_assert(kLoadBits / 32 <= kColumns, "a load holds at most kColumns columns");
  static_assert(kRowsM == 1 || kRowsM == 2 || kRowsM == 4, "kRowsM: 1, 2, 4");
  static_assert(kRowsM * kColumns <= 16, "kRowsM * kColumns <= 16 accumulators per thread");
  static_assert(kChunkRows == 4 || kChunkRows == 8 || kChunkRows == 16, "kChunkRows: 4, 8, 16");
  static_assert(kBlocksPerSm >= 1 && kBlocksPerSm * kThreads <= 2048, "kBlocksPerSm: 1 to 8");
  static_assert(kChunkGroups == 1 || kChunkGroups == 2 || kChunkGroups == 4,
                "kChunkGroups: 1, 2, 4");
  using namespace q4_stream_detail;
  // Two copies of the loop, so neither tests x_map per row.
  if (x_map != nullptr) {
    stream<kThreads, kColumns, kLoadBits, kRowsM, kHalfAccumulate, kChunkRows, kChunkGroups>(
        DirectOutput{out}, workspace, tile_counters, DirectInput<true>{x, x_map, K}, qweight,
        scales, qzeros, M, K, N, group_size);
  } else {
    stream<kThreads, kColumns, kLoadBits, kRowsM, kHalfAccumulate, kChunkRows, kChunkGroups>(
        DirectOutput{out}, workspace, tile_counters, DirectInput<false>{x, x_map, K}, qweight,
        scales, qzeros, M, K, N, group_size);
  }
}

// What the fused entry point does around the product (q4_stream_fused_kernel).
enum Q4StreamInput : int {
  kStreamInputDirect = 0,  // x as given (through x_map when set)
  kStreamInputNorm = 1,    // x = rms_norm(x + input_delta) * norm_weight, gathered by x_map
  kStreamInputSilu = 2,    // x = silu(x) * up (x is the gate), in the weights' order
};
struct Q4StreamFusion {
  const __half* norm_weight;     // kStreamInputNorm: [K]
  const __half* input_delta;     // kStreamInputNorm: [K] added to x first, or null
  const __half* up;              // kStreamInputSilu: [K]
  __half* residual;              // kResidual: [N], out is unused
  const __half* residual_delta;  // kResidual: [N] added before this product's sum, or null
  __half* sorted_copy;           // kResidual: [N] the residual row again, in sorted order; or null
  const int* sorted_position;    // kResidual with sorted_copy: [N] original -> sorted row
  float eps;                     // kStreamInputNorm
};

namespace q4_stream_detail {

// Calls run(input) with a fused kernel's input (kInput, Q4StreamInput): the norm or SiLU computed
// into the warp's staging row (kChunkRows * 8 halves), or x as given; each x_map case its own
// instantiation, so no loop tests x_map. Shared by the stream-K and tile fused kernels.
template <int kChunkRows, int kInput, class Run>
__device__ __forceinline__ void with_fused_input(const Run& run, __half* warp_staged,
                                                 const __half* x, const int* x_map, int K,
                                                 const Q4StreamFusion& fusion) {
  if constexpr (kInput == kStreamInputNorm) {
    if (x_map != nullptr) {
      run(StagedInput<kChunkRows, NormCompute<true, kChunkRows / 4>>{
          warp_staged, {x, fusion.input_delta, fusion.norm_weight, x_map, K, fusion.eps}});
    } else {
      run(StagedInput<kChunkRows, NormCompute<false, kChunkRows / 4>>{
          warp_staged, {x, fusion.input_delta, fusion.norm_weight, x_map, K, fusion.eps}});
    }
  } else if constexpr (kInput == kStreamInputSilu) {
    run(StagedInput<kChunkRows, SiluCompute>{warp_staged, {x, fusion.up}});
  } else if (x_map != nullptr) {
    run(DirectInput<true>{x, x_map, K});
  } else {
    run(DirectInput<false>{x, x_map, K});
  }
}

// Calls run(output) with a fused kernel's output: out, or (kResidual) the residual row.
template <bool kResidual, class Run>
__device__ __forceinline__ void with_fused_output(const Run& run, __half* out,
                                                  const Q4StreamFusion& fusion) {
  if constexpr (kResidual) {
    run(ResidualOutput{fusion.residual, fusion.residual_delta, fusion.sorted_copy,
                       fusion.sorted_position});
  } else {
    run(DirectOutput{out});
  }
}

}  // namespace q4_stream_detail

// q4_stream_kernel for one token (M = 1) with its neighbours fused, so a decode layer needs no
// norm, SiLU or residual-add launch: the input computed from the producers' outputs (the norm
// after a block-wide sum of squares), the output added into the residual row. Same weights,
// workspace and geometry as q4_stream_kernel with the same parameters; results equal the unfused
// kernels' (q4jit_common.cuh roundings) up to the fp32 order of the sum of squares.
template <int kThreads = 128, int kColumns = 4, int kLoadBits = 128, int kRowsM = 1,
          bool kHalfAccumulate = false, int kChunkRows = 8, int kBlocksPerSm = 4,
          int kInput = kStreamInputNorm, bool kResidual = false, int kChunkGroups = 1>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    q4_stream_fused_kernel(__half* __restrict__ out, float* __restrict__ workspace,
                           unsigned* __restrict__ tile_counters, const __half* __restrict__ x,
                           const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                           const __half* __restrict__ scales, const unsigned* __restrict__ qzeros,
                           int M, int K, int N, int group_size, Q4StreamFusion fusion) {
  using namespace q4_stream_detail;
  prefetch_first_chunks<kThreads, kColumns, kChunkRows>(qweight, K, N);
  static_assert(kInput >= kStreamInputDirect && kInput <= kStreamInputSilu, "kInput: 0, 1, 2");
  __shared__ __align__(16) __half staged[kThreads / 32][kChunkRows * 8];
  __half* warp_staged = staged[threadIdx.x / 32];
  with_fused_input<kChunkRows, kInput>(
      [&](const auto& input) {
        with_fused_output<kResidual>(
            [&](const auto& output) {
              stream<kThreads, kColumns, kLoadBits, kRowsM, kHalfAccumulate, kChunkRows,
                     kChunkGroups>(output, workspace, tile_counters, input, qweight, scales, qzeros,
                                   M, K, N, group_size);
            },
            out, fusion);
      },
      warp_staged, x, x_map, K, fusion);
}
