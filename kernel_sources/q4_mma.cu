// q4_mma: out[M, N] = x[M, K] * dequantize(GPTQ 4-bit W)[K, N] on tensor cores, for M from about
// 8 up (any M, bounds-checked). The host descriptor is q4_mma.hpp; the CPU reference is
// dequantize_gptq + ref::matmul. Not here: the GEMV path for M = 1..8 (q4_matmul.cu), the
// dequantize-then-GEMM path (dequantize_q4.cu, gemm_f16.cu). Embedded and compiled by NVRTC at run
// time; with the template defaults it also builds standalone under nvcc (sm_80+) for ncu.
//
// Layout:    x [M, K] fp16, original row order | x_map [K] int32 sorted row -> original row, or
//            null (no act-order) | qweight [K/8, N] | scales [G, N] fp16 | qzeros [G, N/8] |
//            out [M, N] fp16 | workspace fp32 [M, N] and tile_counters, zero, when split-K.
// Geometry:  grid (ceil(N / kTileN), ceil(M / kTileM), split-K), block 32 * kWarpsN * kWarpsK,
//            dynamic shared memory q4_mma_smem_bytes(): kStages stages of (x tile, packed weight
//            tile, the tile's scale and zero rows), reused by the epilogue.
// Pipeline:  kStages - 1 K-tiles in flight through cp.async while one is computed. With act-order
//            the x tile is gathered through x_map (plain loads, stored to the stage).
// Warps:     kWarpsN side by side along N (kTileN / kWarpsN columns each, all kTileM rows); kWarpsK
//            share each K-tile's 32-row chunks and are summed in shared memory.
// Fragments: mma.sync m16n8k16 with x as A and W as B. A packed word holds rows 8r..8r+7 of one
//            column; thread (g = lane / 4, t = lane % 4) of a warp dequantizes the word of column g
//            and packed row 4c + t of chunk c into the pairs (row j, row j + 4), j = 0..3
//            (q4_dequant.cuh), and uses pairs 0, 1 as B of one mma and pairs 2, 3 as B of the
//            next. The reduction order inside a chunk is free, so A takes the same pairs of x: one
//            16-byte load of x[row][32c + 8t ..] per row, paired by pair_activations(). No
//            shuffles, each weight dequantized exactly once.
// Parameters (allowed values and constraints in q4_mma.hpp, asserted below): kTileM 16, 32, 64;
//            kTileN 64, 128, 256; kTileK 32, 64, 128, 256; kWarpsN 1..8; kWarpsK 1, 2, 4; kStages
//            2..4. Split-K is the grid's z (a launch parameter: it changes no code).
// Weights are rounded to fp16 after scaling ((q - z) * s), products accumulate in fp32.
#include <cuda_fp16.h>

#include "mma_common.cuh"
#include "q4_dequant.cuh"

namespace q4_mma_detail {

// Shared-memory geometry of one stage, in bytes. x rows are padded so that the 8 rows one
// 16-byte-load phase reads fall on distinct banks (row pitch = 64 mod 128 bytes); weight rows by
// 8 words so the 4 packed rows a warp reads per column land on distinct banks.
template <int kTileM, int kTileN, int kTileK>
struct StageLayout {
  static constexpr int kChunks = kTileK / 32;
  static constexpr int kXPitch = (kTileK * 2) % 128 == 0 ? kTileK + 32 : kTileK;  // halves
  static constexpr int kWPitch = kTileN + 8;                                      // words
  static constexpr int kXBytes = kTileM * kXPitch * 2;
  static constexpr int kWBytes = (kTileK / 8) * kWPitch * 4;
  static constexpr int kScaleBytes = kChunks * kTileN * 2;
  static constexpr int kZeroBytes = kChunks * (kTileN / 8) * 4;
  static constexpr int kBytes = kXBytes + kWBytes + kScaleBytes + kZeroBytes;
  static constexpr int kTilePitch = kTileN + 4;  // floats, epilogue tile
  static constexpr int kEpilogueBytes = kTileM * kTilePitch * 4;
};

}  // namespace q4_mma_detail

// The kernel's dynamic shared memory: the stages, or the epilogue tile when larger.
template <int kTileM, int kTileN, int kTileK, int kStages>
__host__ __device__ constexpr int q4_mma_smem_bytes() {
  using Layout = q4_mma_detail::StageLayout<kTileM, kTileN, kTileK>;
  return kStages * Layout::kBytes > Layout::kEpilogueBytes ? kStages * Layout::kBytes
                                                           : Layout::kEpilogueBytes;
}

template <int kTileM = 16, int kTileN = 128, int kTileK = 64, int kWarpsN = 4, int kWarpsK = 1,
          int kStages = 3>
__global__ void __launch_bounds__(32 * kWarpsN * kWarpsK)
    q4_mma_kernel(__half* __restrict__ out, float* __restrict__ workspace,
                  unsigned* __restrict__ tile_counters, const __half* __restrict__ x,
                  const int* __restrict__ x_map, const unsigned* __restrict__ qweight,
                  const __half* __restrict__ scales, const unsigned* __restrict__ qzeros, int M,
                  int K, int N, int group_size) {
  q4jit_device::grid_dependency_begin();
  static_assert(kTileM == 16 || kTileM == 32 || kTileM == 64, "kTileM: 16, 32 or 64");
  static_assert(kTileN == 64 || kTileN == 128 || kTileN == 256, "kTileN: 64, 128 or 256");
  static_assert(kTileK == 32 || kTileK == 64 || kTileK == 128 || kTileK == 256,
                "kTileK: 32, 64, 128 or 256");
  static_assert(kWarpsK == 1 || kWarpsK == 2 || kWarpsK == 4, "kWarpsK: 1, 2 or 4");
  static_assert(kWarpsN >= 1 && kWarpsN <= 8 && kTileN % (8 * kWarpsN) == 0,
                "kWarpsN: 1..8, whole n8 tiles per warp");
  static_assert(kWarpsN * kWarpsK <= 8, "at most 256 threads");
  static_assert((kTileK / 32) % kWarpsK == 0, "kWarpsK divides the K-tile's 32-row chunks");
  static_assert(kStages >= 2 && kStages <= 4, "kStages: 2, 3 or 4");
  constexpr int kWarpN = kTileN / kWarpsN;
  static_assert((kTileM / 16) * (kWarpN / 8) <= 16, "at most 16 mma tiles (64 fp32) per thread");
  using namespace q4jit_device;
  using Layout = q4_mma_detail::StageLayout<kTileM, kTileN, kTileK>;
  constexpr int kThreads = 32 * kWarpsN * kWarpsK;
  constexpr int kFragmentsM = kTileM / 16;
  constexpr int kFragmentsN = kWarpN / 8;
  extern __shared__ __align__(16) unsigned char smem[];

  const int n0 = blockIdx.x * kTileN;
  const int m0 = blockIdx.y * kTileM;
  const int tiles_total = (K + kTileK - 1) / kTileK;
  const int per_split = (tiles_total + gridDim.z - 1) / gridDim.z;
  const int tile_begin = min(tiles_total, int(blockIdx.z) * per_split);
  const int tiles = min(tiles_total, tile_begin + per_split) - tile_begin;
  const int packed_rows = K / 8;
  const int groups = K / group_size;

  auto x_stage = [&](int s) { return reinterpret_cast<__half*>(smem + s * Layout::kBytes); };
  auto w_stage = [&](int s) {
    return reinterpret_cast<unsigned*>(smem + s * Layout::kBytes + Layout::kXBytes);
  };
  auto scale_stage = [&](int s) {
    return reinterpret_cast<__half*>(smem + s * Layout::kBytes + Layout::kXBytes + Layout::kWBytes);
  };
  auto zero_stage = [&](int s) {
    return reinterpret_cast<unsigned*>(smem + s * Layout::kBytes + Layout::kXBytes +
                                       Layout::kWBytes + Layout::kScaleBytes);
  };

  // Fills stage s with K-tile `tile` (K rows tile * kTileK ..): zeros outside M, N and K.
  auto load_stage = [&](int s, int tile) {
    const int k0 = tile * kTileK;
    unsigned* w = w_stage(s);
    for (int i = threadIdx.x; i < (kTileK / 8) * (kTileN / 4); i += kThreads) {
      const int r = i / (kTileN / 4), c = 4 * (i % (kTileN / 4));
      const int row = k0 / 8 + r, column = n0 + c;
      const bool inside = row < packed_rows && column < N;
      cp_async_16(w + r * Layout::kWPitch + c,
                  inside ? qweight + size_t(row) * N + column : qweight, inside ? 16 : 0);
    }
    __half* scale = scale_stage(s);
    unsigned* zero = zero_stage(s);
    for (int i = threadIdx.x; i < Layout::kChunks * (kTileN / 8); i += kThreads) {
      const int chunk = i / (kTileN / 8), c = 8 * (i % (kTileN / 8));
      const int k = k0 + 32 * chunk, group = k / group_size;
      const bool inside = k < K && n0 + c < N && group < groups;
      cp_async_16(scale + chunk * kTileN + c, inside ? scales + size_t(group) * N + n0 + c : scales,
                  inside ? 16 : 0);
      cp_async_4(zero + chunk * (kTileN / 8) + c / 8,
                 inside ? qzeros + size_t(group) * (N / 8) + (n0 + c) / 8 : qzeros, inside ? 4 : 0);
    }
    __half* xs = x_stage(s);
    if (x_map == nullptr) {
      for (int i = threadIdx.x; i < kTileM * (kTileK / 8); i += kThreads) {
        const int m = i / (kTileK / 8), k = 8 * (i % (kTileK / 8));
        const bool inside = m0 + m < M && k0 + k < K;
        cp_async_16(xs + m * Layout::kXPitch + k, inside ? x + size_t(m0 + m) * K + k0 + k : x,
                    inside ? 16 : 0);
      }
    } else {
      // Act-order: the stage holds x in sorted row order, gathered through x_map.
      for (int i = threadIdx.x; i < kTileM * (kTileK / 2); i += kThreads) {
        const int m = i / (kTileK / 2), k = 2 * (i % (kTileK / 2));
        __half2 pair = __float2half2_rn(0.0f);
        if (m0 + m < M && k0 + k < K) {
          const __half* row = x + size_t(m0 + m) * K;
          pair = __halves2half2(row[__ldg(x_map + k0 + k)], row[__ldg(x_map + k0 + k + 1)]);
        }
        *reinterpret_cast<__half2*>(xs + m * Layout::kXPitch + k) = pair;
      }
    }
  };

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int warp_n = warp % kWarpsN, warp_k = warp / kWarpsN;
  float acc[kFragmentsM][kFragmentsN][4] = {};

  // One 32-row chunk of stage s: each weight word dequantized once, two mma per word.
  auto compute_chunk = [&](int s, int chunk) {
    const __half* xs = x_stage(s);
    unsigned a[kFragmentsM][2][4];  // [m tile][mma of the chunk][A registers]
#pragma unroll
    for (int f = 0; f < kFragmentsM; ++f) {
      __half2 low[4], high[4];
      const __half* row = xs + (f * 16 + g) * Layout::kXPitch + 32 * chunk + 8 * t;
      pair_activations(*reinterpret_cast<const uint4*>(row), low);
      pair_activations(*reinterpret_cast<const uint4*>(row + 8 * Layout::kXPitch), high);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        a[f][h][0] = half2_bits(low[2 * h]);
        a[f][h][1] = half2_bits(high[2 * h]);
        a[f][h][2] = half2_bits(low[2 * h + 1]);
        a[f][h][3] = half2_bits(high[2 * h + 1]);
      }
    }
    const unsigned* w = w_stage(s) + (4 * chunk + t) * Layout::kWPitch;
    const __half* scale = scale_stage(s) + chunk * kTileN;
    const unsigned* zero = zero_stage(s) + chunk * (kTileN / 8);
    unsigned b[kFragmentsN][2][2];  // [n tile][mma of the chunk][B registers]
#pragma unroll
    for (int f = 0; f < kFragmentsN; ++f) {
      const int column = warp_n * kWarpN + f * 8 + g;
      const unsigned z = ((zero[column / 8] >> (4 * (column % 8))) & 15u) + 1u;
      const __half2 scale2 = __half2half2(scale[column]);
      __half2 pairs[4];
      dequantize_word(w[column], zero_1024(z), pairs);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        b[f][h][0] = half2_bits(__hmul2(pairs[2 * h], scale2));
        b[f][h][1] = half2_bits(__hmul2(pairs[2 * h + 1], scale2));
      }
    }
    // The two mma of a word accumulate into the same tile: the other tiles' mma go in between.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int f = 0; f < kFragmentsN; ++f) {
#pragma unroll
        for (int fm = 0; fm < kFragmentsM; ++fm) mma_16816(acc[fm][f], a[fm][h], b[f][h]);
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_stage(s, tile_begin + s);
    cp_async_commit();  // empty groups keep the wait count uniform
  }
  for (int i = 0; i < tiles; ++i) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage i % kStages is complete, and every warp is done with stage i - 1
    if (i + kStages - 1 < tiles)
      load_stage((i + kStages - 1) % kStages, tile_begin + i + kStages - 1);
    cp_async_commit();
#pragma unroll
    for (int c = 0; c < Layout::kChunks / kWarpsK; ++c) {
      compute_chunk(i % kStages, c * kWarpsK + warp_k);  // unrolled: chunks overlap
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages become the epilogue tile

  float* tile = reinterpret_cast<float*>(smem);
  if constexpr (kWarpsK > 1) {
    for (int i = threadIdx.x; i < kTileM * Layout::kTilePitch; i += kThreads) tile[i] = 0.0f;
    __syncthreads();
  }
#pragma unroll
  for (int fm = 0; fm < kFragmentsM; ++fm) {
#pragma unroll
    for (int f = 0; f < kFragmentsN; ++f) {
      const int column = warp_n * kWarpN + f * 8 + 2 * t;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float* at = tile + (fm * 16 + g + 8 * half) * Layout::kTilePitch + column;
        if constexpr (kWarpsK > 1) {
          atomicAdd(at, acc[fm][f][2 * half]);
          atomicAdd(at + 1, acc[fm][f][2 * half + 1]);
        } else {
          *reinterpret_cast<float2*>(at) =
              make_float2(acc[fm][f][2 * half], acc[fm][f][2 * half + 1]);
        }
      }
    }
  }
  __syncthreads();
  store_tile<kThreads, kTileM, kTileN, Layout::kTilePitch>(tile, out, workspace, tile_counters, M,
                                                           N, m0, n0);
}
