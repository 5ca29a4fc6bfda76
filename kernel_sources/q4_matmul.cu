// q4_matmul: out[M, N] = x[M, K] * dequantize(GPTQ 4-bit W)[K, N], GEMV to small GEMM (M = 1..8
// rows per pass, any M by looping passes). The host descriptor (parameters, legality, geometry,
// workspace) is q4_matmul.hpp; the CPU reference is dequantize_gptq + ref::matmul; the family's
// stream-K GEMV (configs with sr > 0) is q4_stream.cuh and its tensor-core tile GEMV (tc > 0)
// q4_tile.cuh, both included below. Not here: the
// tensor-core path for larger M. Embedded and compiled by NVRTC at run time; with the template
// defaults it also builds standalone under nvcc for ncu.
//
// Layout:    x [M, K] fp16, original row order | x_map [K] int32 sorted row -> original row, or
//            null (no act-order) | qweight [K/8, N] | scales [G, N] fp16 | qzeros [G, N/8] |
//            out [M, N] fp16. Group g is (sorted) rows g*group_size .. (g+1)*group_size - 1.
// Geometry:  units = ceil(N / (32 * kColumns)) column tiles x ceil(K / kSlice) K-splits; grid
//            (tiles, splits), one block per unit, or (kBlocksPerSm > 0) SMs x kBlocksPerSm blocks
//            striding over the units, the next unit's first loads in flight during the hand-on;
//            block kThreads: lane = 32 adjacent column groups, warp = a contiguous share of the
//            K-slice's rows (a group's scales and zeros are loaded once per thread).
// Split-K:   with more than one split, each block adds its partial sums to an fp32 workspace
//            (atomics) or stores them (two-pass), then bumps its tile's counter; the block that
//            arrives last sums the tile in split order (two-pass) and writes fp16 out, and leaves
//            workspace and counter zero again: one launch, no memset. A K-slice need not align
//            with groups (the group is looked up when a thread's row crosses into the next one;
//            group_size % 8 == 0).
// Arithmetic: the fp16 dot of (q - z) and x runs over up to 4 packed words of one group, then is
// scaled once into the fp32 (or, kHalfAccumulate, half2) running sum; the zero is folded into
// the dequantize's two constants. Parameters change speed, never results beyond that rounding
// and fp32 reduction order (tolerances in q4_matmul.hpp).
#include "portable.cuh"

#include "q4_dequant.cuh"
#include "q4_stream.cuh"
#include "q4_tile.cuh"
#include "q4jit_common.cuh"

namespace q4_matmul_detail {

// Packed rows a thread loads before using any (bytes in flight), capped by registers.
__host__ __device__ constexpr int rows_in_flight(int rows_per_thread, int columns) {
  const int cap = 32 / columns;
  return rows_per_thread < cap ? rows_per_thread : cap;
}

}  // namespace q4_matmul_detail

template <int kThreads = 256, int kColumns = 4, int kLoadBits = 128, int kSlice = 256,
          int kRowsM = 1, bool kStageX = true, bool kHalfAccumulate = false, bool kTwoPass = false,
          int kBlocksPerSm = 0>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm > 0 ? kBlocksPerSm : 1)
    q4_matmul_kernel(__half* __restrict__ out, float* __restrict__ workspace,
                     unsigned* __restrict__ tile_counters, const __half* __restrict__ x,
                     const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                     const __half* __restrict__ scales, const unsigned* __restrict__ qzeros, int M,
                     int K, int N, int group_size) {
  static_assert(kThreads == 32 || kThreads == 64 || kThreads == 128 || kThreads == 256,
                "kThreads: 32, 64, 128 or 256");
  static_assert(kColumns == 2 || kColumns == 4 || kColumns == 8, "kColumns: 2, 4 or 8");
  static_assert(kLoadBits == 32 || kLoadBits == 64 || kLoadBits == 128, "kLoadBits: 32, 64, 128");
  static_assert(kLoadBits / 32 <= kColumns, "a load holds at most kColumns columns");
  static_assert(kSlice == 256 || kSlice == 512 || kSlice == 1024, "kSlice: 256, 512 or 1024");
  static_assert(kRowsM == 1 || kRowsM == 2 || kRowsM == 4 || kRowsM == 8, "kRowsM: 1, 2, 4, 8");
  static_assert(kRowsM * kColumns <= 16, "kRowsM * kColumns <= 16 accumulators per thread");
  static_assert(kBlocksPerSm >= 0 && kBlocksPerSm <= 8,
                "kBlocksPerSm: 0 (one block per unit) to 8");
  using namespace q4jit_device;
  using Accumulator = q4jit_device::Accumulator<kHalfAccumulate>;
  constexpr bool kPersistent = kBlocksPerSm > 0;
  constexpr int kWarps = kThreads / 32;
  constexpr int kVector = kLoadBits / 32;      // adjacent columns per load
  constexpr int kLoads = kColumns / kVector;   // loads per packed row
  constexpr int kTileColumns = 32 * kColumns;  // columns per block
  constexpr int kSliceRows = kSlice / 8;       // packed rows per block
  constexpr int kRowsPerThread = kSliceRows / kWarps;
  constexpr int kBatch = q4_matmul_detail::rows_in_flight(kRowsPerThread, kColumns);
  static_assert(kRowsPerThread % kBatch == 0, "batches tile the thread's rows");
  // fp16 running dots span at most this many packed words (16 products per lane) before fp32.
  constexpr int kChainWords = 4;
  static_assert(kBatch % kChainWords == 0, "chains end inside a batch");

  // staged[m][row][j]: the activation pairs of packed row `row` of the slice, for pass row m.
  __shared__ __half2 staged[kStageX ? kRowsM * kSliceRows * 4 : 1];
  __shared__ float partial[kWarps][kTileColumns];
  __shared__ bool last_block;

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int packed_rows = K / 8;
  const int tiles = (N + kTileColumns - 1) / kTileColumns;
  const int splits = (packed_rows + kSliceRows - 1) / kSliceRows;
  const int units = tiles * splits;  // unit = tile + split * tiles
  const int passes = (M + kRowsM - 1) / kRowsM;
  // Load l of a thread covers columns column_of(tile, l) .. + kVector - 1.
  auto column_of = [&](int tile, int l) {
    return tile * kTileColumns + l * 32 * kVector + lane * kVector;
  };

  // Packed row `batch + b` of this thread, relative to the slice: a warp's rows are contiguous, so
  // a thread meets few groups and loads each group's scales and zeros once.
  auto local_row_of = [&](int batch, int b) { return warp * kRowsPerThread + batch + b; };
  using Batch = WeightWords<kVector>[kBatch][kLoads];
  auto load_batch = [&](Batch& words, int unit, int batch) {
    const int tile = unit % tiles, row_begin = unit / tiles * kSliceRows;
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int row = row_begin + local_row_of(batch, b);
#pragma unroll
      for (int l = 0; l < kLoads; ++l) {
        if (row < packed_rows && column_of(tile, l) < N) {
          words[b][l] = load_weight_words<kVector>(qweight + size_t(row) * N + column_of(tile, l));
        } else {
#pragma unroll
          for (int v = 0; v < kVector; ++v) words[b][l].value[v] = 0;
        }
      }
    }
  };

  // Steps (unit, pass) in order. One block per unit, or (persistent) a grid of whole waves
  // striding over the units, so no partial last wave and no block launch per unit.
  int unit = kPersistent ? int(blockIdx.x) : int(blockIdx.x + blockIdx.y * gridDim.x);
  const int unit_stride = kPersistent ? int(gridDim.x) : units;
  int pass = 0;
  Batch words;
  // Weights are never written by an earlier kernel: the first unit's rows are requested from L2
  // and its first batch loaded before waiting for the previous kernel (portable.cuh).
  if (unit < units) {
    const int first_tile = unit % tiles, first_row = unit / tiles * kSliceRows;
    const int last_line_column = max(0, N - 32);  // a 128-byte line holds 32 words
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int row = first_row + local_row_of(0, r);
      for (int line = lane; line < kColumns && row < packed_rows; line += 32) {
        const int column = min(first_tile * kTileColumns + line * 32, last_line_column);
        prefetch_l2(qweight + size_t(row) * N + column);
      }
    }
    load_batch(words, unit, 0);
  }
  grid_dependency_begin();
  while (unit < units) {
    const int tile = unit % tiles, split = unit / tiles;
    const int row_begin = split * kSliceRows;
    const int m0 = pass * kRowsM;
    const int rows_m = min(kRowsM, M - m0);
    if constexpr (kStageX) {
      // The step's first weights are in flight while its activations are staged.
      __syncthreads();  // the previous step is done with staged
      for (int i = threadIdx.x; i < kRowsM * kSliceRows; i += kThreads) {
        const int m = i / kSliceRows, row = row_begin + i % kSliceRows;
        __half2 pairs[4];
        if (m < rows_m && row < packed_rows && x_map != nullptr) {
          const __half* x_row = x + size_t(m0 + m) * K;
          __half values[8];
#pragma unroll
          for (int j = 0; j < 8; ++j) values[j] = x_row[x_map[row * 8 + j]];
          pair_activations(values, pairs);
        } else if (m < rows_m && row < packed_rows) {
          pair_activations(*reinterpret_cast<const uint4*>(x + size_t(m0 + m) * K + row * 8),
                           pairs);
        } else {
          pair_activations(make_uint4(0, 0, 0, 0), pairs);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) staged[i * 4 + j] = pairs[j];
      }
      __syncthreads();
    }

    // Per column: the fp16 running dot of up to kChainWords words of one group, scaled into acc
    // once (flush); the group's scale and zero constants, loaded when the group changes.
    Accumulator acc[kRowsM][kColumns];
    __half2 chain[kRowsM][kColumns];
    __half scale[kColumns];
    __half2 low_zero[kColumns], high_zero[kColumns];
#pragma unroll
    for (int c = 0; c < kColumns; ++c) {
      scale[c] = __ushort_as_half(0);
      low_zero[c] = high_zero[c] = __half2half2(__ushort_as_half(0));
#pragma unroll
      for (int m = 0; m < kRowsM; ++m) chain[m][c] = __half2half2(__ushort_as_half(0));
    }
    auto flush = [&]() {
#pragma unroll
      for (int m = 0; m < kRowsM; ++m) {
#pragma unroll
        for (int c = 0; c < kColumns; ++c) {
          acc[m][c].add(scale[c], chain[m][c]);
          chain[m][c] = __half2half2(__ushort_as_half(0));
        }
      }
    };
    auto load_group = [&](int group) {
#pragma unroll
      for (int l = 0; l < kLoads; ++l) {
        const int column = column_of(tile, l);
        if (column >= N) continue;
        const unsigned zero_word =
            __ldg(qzeros + size_t(group) * (N / 8) + column / 8) >> (4 * (column % 8));
        const HalfVector<kVector> scales_l =
            *reinterpret_cast<const HalfVector<kVector>*>(scales + size_t(group) * N + column);
#pragma unroll
        for (int v = 0; v < kVector; ++v) {
          const unsigned zero = ((zero_word >> (4 * v)) & 15u) + 1u;
          scale[l * kVector + v] = scales_l.value[v];
          low_zero[l * kVector + v] = low_zero_of(zero);
          high_zero[l * kVector + v] = high_zero_of(zero);
        }
      }
    };
    const int rows_per_group = group_size / 8;
    int group_end = 0;  // first packed row past the loaded group; rows only grow within a step
    for (int batch = 0; batch < kRowsPerThread; batch += kBatch) {
      // Software pipeline: the next batch's loads are issued before this batch is used.
      Batch next;
      const bool more = kRowsPerThread > kBatch && batch + kBatch < kRowsPerThread;
      if (more) load_batch(next, unit, batch + kBatch);
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int local_row = local_row_of(batch, b);
        const int row = row_begin + local_row;
        if (row < packed_rows) {
          if (row >= group_end) {  // warp-uniform; rare
            flush();
            const int group = row / rows_per_group;
            group_end = (group + 1) * rows_per_group;
            load_group(group);
          }
          __half2 activations[kRowsM][4];
#pragma unroll
          for (int m = 0; m < kRowsM; ++m) {
            if constexpr (kStageX) {
#pragma unroll
              for (int j = 0; j < 4; ++j)
                activations[m][j] = staged[(m * kSliceRows + local_row) * 4 + j];
            } else {
              const __half* x_row = x + size_t(m0 + m) * K;
              if (m < rows_m && x_map != nullptr) {
                __half values[8];
#pragma unroll
                for (int j = 0; j < 8; ++j) values[j] = x_row[__ldg(x_map + row * 8 + j)];
                pair_activations(values, activations[m]);
              } else if (m < rows_m) {
                pair_activations(__ldg(reinterpret_cast<const uint4*>(x_row + row * 8)),
                                 activations[m]);
              } else {
                pair_activations(make_uint4(0, 0, 0, 0), activations[m]);
              }
            }
          }
#pragma unroll
          for (int l = 0; l < kLoads; ++l) {
#pragma unroll
            for (int v = 0; v < kVector; ++v) {
              const int c = l * kVector + v;
              __half2 w[4];
              dequantize_word(words[b][l].value[v], low_zero[c], high_zero[c], w);
#pragma unroll
              for (int m = 0; m < kRowsM; ++m)
                chain[m][c] = dot_word(w, activations[m], chain[m][c]);
            }
          }
        }
        if (b % kChainWords == kChainWords - 1) flush();
      }
      if (more) {
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
#pragma unroll
          for (int l = 0; l < kLoads; ++l) words[b][l] = next[b][l];
        }
      }
    }

    // The next step's first weights are in flight during this step's reduction and hand-on.
    int next_unit = unit, next_pass = pass + 1;
    if (next_pass == passes) {
      next_pass = 0;
      next_unit += unit_stride;
    }
    if (next_unit < units) load_batch(words, next_unit, 0);

      // Sum the warps' shares of the slice, then hand the block's sums on.
#pragma unroll
    for (int m = 0; m < kRowsM; ++m) {
      if (m >= rows_m) break;  // block-uniform
#pragma unroll
      for (int c = 0; c < kColumns; ++c) {
        const int l = c / kVector, v = c % kVector;
        partial[warp][l * 32 * kVector + lane * kVector + v] = acc[m][c].total();
      }
      __syncthreads();
      for (int i = threadIdx.x; i < kTileColumns; i += kThreads) {
        const int column = tile * kTileColumns + i;
        if (column >= N) continue;
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sum += partial[w][i];
        const size_t at = size_t(m0 + m) * N + column;
        if (splits == 1) {
          out[at] = __float2half_rn(sum);
        } else if (kTwoPass) {
          workspace[size_t(split) * M * N + at] = sum;
        } else {
          atomicAdd(workspace + at, sum);
        }
      }
      __syncthreads();
    }

    if (splits > 1 && pass == passes - 1) {
      // The last block of this column tile to finish writes the output and cleans up. One
      // thread fences after the barrier (cumulative over the block's writes, as in a grid sync).
      if (threadIdx.x == 0) {
        __threadfence();
        last_block = atomicAdd(tile_counters + tile, 1u) == unsigned(splits - 1);
        if (last_block) __threadfence();
      }
      __syncthreads();
      if (last_block) {
        for (int i = threadIdx.x; i < M * kTileColumns; i += kThreads) {
          const int m = i / kTileColumns;
          const int column = tile * kTileColumns + i % kTileColumns;
          if (column >= N) continue;
          const size_t at = size_t(m) * N + column;
          float sum = 0.0f;
          if (kTwoPass) {
            for (int s = 0; s < splits; ++s) sum += __ldcg(workspace + size_t(s) * M * N + at);
          } else {
            sum = __ldcg(workspace + at);
            __stcg(workspace + at, 0.0f);
          }
          out[at] = __float2half_rn(sum);
        }
        if (threadIdx.x == 0) tile_counters[tile] = 0;
      }
    }
    unit = next_unit;
    pass = next_pass;
  }
}

// The separate gather of the "pregather" strategy: gathered[m][s] = x[m][x_map[s]], so the
// matmul then reads sorted activations with no x_map. Grid (ceil(K / 256), M), block 256.
extern "C" __global__ void __launch_bounds__(256)
    q4_gather_kernel(__half* __restrict__ gathered, const __half* __restrict__ x,
                     const int* __restrict__ x_map, int K) {
  q4jit_device::grid_dependency_begin();
  const int s = blockIdx.x * 256 + threadIdx.x;
  if (s >= K) return;
  const size_t row = blockIdx.y;
  gathered[row * K + s] = x[row * K + x_map[s]];
}
