// gemm_f16: out[M, N] = x[M, K] * W[N, K]^T in fp16 with fp32 accumulation on tensor cores:
// gemm_f16_kernel with mma.sync m16n8k16 (sm_80+), and at the end of the file
// gemm_f16_wgmma_kernel with warpgroup MMA (sm_90a, about twice as fast on an H100). W is row-major
// [N, K]: the fp16 checkpoint layout (the fp16 model path, the lm_head) and what dequantize_q4.cu
// writes. The host descriptor is gemm_f16.hpp; the CPU reference is ref::matmul. Embedded and
// compiled by NVRTC at run time; with the template defaults it also builds standalone under nvcc
// (sm_80+) for ncu.
//
// Layout:    x [M, K] fp16 | W [N, K] fp16 | out [M, N] fp16 | workspace fp32 [M, N] and
//            tile_counters, zero, when split-K. K % 8 == 0 and N % 2 == 0 (16-byte rows chunks,
//            paired stores); everything else bounds-checked.
// Geometry:  grid (ceil(N / kTileN), ceil(M / kTileM), split-K), block 32 * kWarpsM * kWarpsN,
//            dynamic shared memory gemm_f16_smem_bytes().
// Pipeline:  kStages - 1 K-tiles of x and W in flight through cp.async while one is computed;
//            rows padded by 16 bytes so ldmatrix reads 8 rows from distinct banks.
// Warps:     kWarpsM x kWarpsN, each a (kTileM / kWarpsM) x (kTileN / kWarpsN) tile of the output;
//            A fragments by ldmatrix.x4 of x, B by ldmatrix.x4 of W (two n8 tiles a load).
// Parameters (allowed values and constraints in gemm_f16.hpp, asserted below): kTileM 16..128,
//            kTileN 32..256, kTileK 32, 64; kWarpsM, kWarpsN 1, 2, 4; kStages 2..4. Split-K is the
//            grid's z (a launch parameter). The wgmma kernel's own notes precede it.
#include <cuda_fp16.h>

#include "mma_common.cuh"
#include "wgmma.cuh"

namespace gemm_f16_detail {

template <int kTileM, int kTileN, int kTileK>
struct StageLayout {
  static constexpr int kPitch = kTileK + 8;  // halves
  static constexpr int kXBytes = kTileM * kPitch * 2;
  static constexpr int kBytes = (kTileM + kTileN) * kPitch * 2;
  static constexpr int kTilePitch = kTileN + 4;  // floats, epilogue tile
  static constexpr int kEpilogueBytes = kTileM * kTilePitch * 4;
};

}  // namespace gemm_f16_detail

template <int kTileM, int kTileN, int kTileK, int kStages>
__host__ __device__ constexpr int gemm_f16_smem_bytes() {
  using Layout = gemm_f16_detail::StageLayout<kTileM, kTileN, kTileK>;
  return kStages * Layout::kBytes > Layout::kEpilogueBytes ? kStages * Layout::kBytes
                                                           : Layout::kEpilogueBytes;
}

template <int kTileM = 64, int kTileN = 128, int kTileK = 32, int kWarpsM = 2, int kWarpsN = 2,
          int kStages = 3>
__global__ void __launch_bounds__(32 * kWarpsM * kWarpsN)
    gemm_f16_kernel(__half* __restrict__ out, float* __restrict__ workspace,
                    unsigned* __restrict__ tile_counters, const __half* __restrict__ x,
                    const __half* __restrict__ weight, int M, int K, int N) {
  q4jit_device::grid_dependency_begin();
  static_assert(kTileM == 16 || kTileM == 32 || kTileM == 64 || kTileM == 128,
                "kTileM: 16, 32, 64 or 128");
  static_assert(kTileN == 32 || kTileN == 64 || kTileN == 128 || kTileN == 256,
                "kTileN: 32, 64, 128 or 256");
  static_assert(kTileK == 32 || kTileK == 64, "kTileK: 32 or 64");
  static_assert(kWarpsM == 1 || kWarpsM == 2 || kWarpsM == 4, "kWarpsM: 1, 2 or 4");
  static_assert(kWarpsN == 1 || kWarpsN == 2 || kWarpsN == 4, "kWarpsN: 1, 2 or 4");
  static_assert(kTileM % (16 * kWarpsM) == 0, "whole m16 tiles per warp");
  static_assert(kTileN % (16 * kWarpsN) == 0, "whole pairs of n8 tiles per warp");
  static_assert(kStages >= 2 && kStages <= 4, "kStages: 2, 3 or 4");
  constexpr int kWarpM = kTileM / kWarpsM, kWarpN = kTileN / kWarpsN;
  static_assert((kWarpM / 16) * (kWarpN / 8) <= 32, "at most 32 mma tiles (128 fp32) per thread");
  using namespace q4jit_device;
  using Layout = gemm_f16_detail::StageLayout<kTileM, kTileN, kTileK>;
  constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  constexpr int kFragmentsM = kWarpM / 16, kFragmentsN = kWarpN / 8;
  constexpr int kPitch = Layout::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];

  const int n0 = blockIdx.x * kTileN;
  const int m0 = blockIdx.y * kTileM;
  const int tiles_total = (K + kTileK - 1) / kTileK;
  const int per_split = (tiles_total + gridDim.z - 1) / gridDim.z;
  const int tile_begin = min(tiles_total, int(blockIdx.z) * per_split);
  const int tiles = min(tiles_total, tile_begin + per_split) - tile_begin;

  auto x_stage = [&](int s) { return reinterpret_cast<__half*>(smem + s * Layout::kBytes); };
  auto w_stage = [&](int s) {
    return reinterpret_cast<__half*>(smem + s * Layout::kBytes + Layout::kXBytes);
  };
  // Rows of `rows` 16-byte chunks of one operand into a stage: zeros past `row_limit` and K.
  auto load_rows = [&](__half* stage, const __half* source, int rows, int row0, int row_limit,
                       int k0) {
    for (int i = threadIdx.x; i < rows * (kTileK / 8); i += kThreads) {
      const int r = i / (kTileK / 8), k = 8 * (i % (kTileK / 8));
      const bool inside = row0 + r < row_limit && k0 + k < K;
      cp_async_16(stage + r * kPitch + k, inside ? source + size_t(row0 + r) * K + k0 + k : source,
                  inside ? 16 : 0);
    }
  };
  auto load_stage = [&](int s, int tile) {
    load_rows(x_stage(s), x, kTileM, m0, M, tile * kTileK);
    load_rows(w_stage(s), weight, kTileN, n0, N, tile * kTileK);
  };

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp % kWarpsM, warp_n = warp / kWarpsM;
  float acc[kFragmentsM][kFragmentsN][4] = {};

  auto compute_stage = [&](int s) {
    const __half* xs = x_stage(s) + (warp_m * kWarpM) * kPitch;
    const __half* ws = w_stage(s) + (warp_n * kWarpN) * kPitch;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      unsigned a[kFragmentsM][4];
#pragma unroll
      for (int f = 0; f < kFragmentsM; ++f) {
        ldmatrix_x4(a[f], xs + (f * 16 + lane % 16) * kPitch + kk + (lane / 16) * 8);
      }
#pragma unroll
      for (int f = 0; f < kFragmentsN; f += 2) {
        unsigned b[4];  // n8 tile f: b[0], b[1]; tile f + 1: b[2], b[3]
        ldmatrix_x4(b,
                    ws + (f * 8 + lane % 8 + (lane / 16) * 8) * kPitch + kk + ((lane / 8) % 2) * 8);
        const unsigned b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
#pragma unroll
        for (int fm = 0; fm < kFragmentsM; ++fm) {
          mma_16816(acc[fm][f], a[fm], b0);
          mma_16816(acc[fm][f + 1], a[fm], b1);
        }
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_stage(s, tile_begin + s);
    cp_async_commit();
  }
  for (int i = 0; i < tiles; ++i) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    if (i + kStages - 1 < tiles)
      load_stage((i + kStages - 1) % kStages, tile_begin + i + kStages - 1);
    cp_async_commit();
    compute_stage(i % kStages);
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages become the epilogue tile

  float* tile = reinterpret_cast<float*>(smem);
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int fm = 0; fm < kFragmentsM; ++fm) {
#pragma unroll
    for (int f = 0; f < kFragmentsN; ++f) {
      const int row = warp_m * kWarpM + fm * 16 + g;
      const int column = warp_n * kWarpN + f * 8 + 2 * t;
      *reinterpret_cast<float2*>(tile + row * Layout::kTilePitch + column) =
          make_float2(acc[fm][f][0], acc[fm][f][1]);
      *reinterpret_cast<float2*>(tile + (row + 8) * Layout::kTilePitch + column) =
          make_float2(acc[fm][f][2], acc[fm][f][3]);
    }
  }
  __syncthreads();
  store_tile<kThreads, kTileM, kTileN, Layout::kTilePitch>(tile, out, workspace, tile_counters, M,
                                                           N, m0, n0);
}

// The sm_90a kernel: the same product with warpgroup MMA (wgmma.mma_async m64n128k16) reading both
// operands from 128-byte-swizzled shared memory (wgmma.cuh). kTileM / 64 warpgroups of 128 threads,
// each owning 64 rows of the block's kTileM x kTileN output in fp32 registers.
// Geometry:  grid (ceil(M / kTileM), ceil(N / kTileN)): blocks of one weight tile run side by side,
//            so a weight matrix larger than the L2 is read from memory once while x stays in L2.
//            Block 2 * kTileM threads; dynamic shared memory gemm_f16_wgmma_smem_bytes(). No
//            split-K (tile_counters and workspace are unused).
// Pipeline:  K-tiles of 64 columns; every thread issues cp.async for both operands. kStages
//            stages, tiles loaded kStages - 2 ahead: when tile i is issued, the wgmma group of tile
//            i - 1 may still run (one group in flight), and the stage loaded next held tile i - 2,
//            whose group every warpgroup has finished before the barrier of iteration i.
template <int kTileM, int kTileN, int kStages>
__host__ __device__ constexpr int gemm_f16_wgmma_smem_bytes() {
  return kStages * (kTileM + kTileN) * 128 + 1024;  // + alignment of the first stage to 1024
}

template <int kTileM = 128, int kTileN = 256, int kStages = 4>
__global__ void __launch_bounds__(2 * kTileM)
    gemm_f16_wgmma_kernel(__half* __restrict__ out, float* __restrict__ /*workspace*/,
                          unsigned* __restrict__ /*tile_counters*/, const __half* __restrict__ x,
                          const __half* __restrict__ weight, int M, int K, int N) {
  q4jit_device::grid_dependency_begin();
  static_assert(kTileM == 64 || kTileM == 128, "kTileM: 64 or 128 (one or two warpgroups)");
  static_assert(kTileN == 128 || kTileN == 256, "kTileN: 128 or 256");
  static_assert(kStages >= 3 && kStages <= 6, "kStages: 3 to 6");
#if Q4JIT_WGMMA
  using namespace q4jit_device;
  constexpr int kThreads = 2 * kTileM;
  constexpr int kRows = kTileM + kTileN;    // x rows then weight rows, 128 bytes each
  constexpr int kStageBytes = kRows * 128;  // a multiple of 1024
  constexpr int kHalvesN = kTileN / 128;    // m64n128 products per k16 step
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const unsigned smem_base = (shared_address(smem_raw) + 1023u) & ~1023u;
  unsigned char* smem = smem_raw + (smem_base - shared_address(smem_raw));

  const int m0 = blockIdx.x * kTileM, n0 = blockIdx.y * kTileN;
  const int tiles = (K + 63) / 64;
  // This thread's 16-byte chunks of a stage: chunk column fixed, rows tid / 8 + 32 u.
  const int chunk = threadIdx.x % 8, first_row = threadIdx.x / 8;
  constexpr int kRowStep = kThreads / 8;
  auto load_stage = [&](int s, int tile) {
    unsigned char* stage = smem + s * kStageBytes;
    const int k = tile * 64 + chunk * 8;
#pragma unroll
    for (int row = first_row; row < kRows; row += kRowStep) {
      const bool is_x = row < kTileM;
      const int source_row = is_x ? m0 + row : n0 + row - kTileM;
      const bool inside = source_row < (is_x ? M : N) && k < K;
      const __half* source = (is_x ? x : weight) + (inside ? size_t(source_row) * K + k : 0);
      cp_async_16(stage + swizzled_offset(row, chunk), source, inside ? 16 : 0);
    }
  };

  const int warpgroup = threadIdx.x / 128;
  float acc[kHalvesN][64];
#pragma unroll
  for (int h = 0; h < kHalvesN; ++h)
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[h][i] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (s < tiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int i = 0; i < tiles; ++i) {
    cp_async_wait<kStages - 3>();
    fence_proxy_async_shared();
    __syncthreads();
    if (i + kStages - 2 < tiles) load_stage((i + kStages - 2) % kStages, i + kStages - 2);
    cp_async_commit();
    const unsigned stage = smem_base + unsigned((i % kStages) * kStageBytes);
    const unsigned a_tile = stage + unsigned(warpgroup * 64 * 128);
    const unsigned b_tile = stage + unsigned(kTileM * 128);
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < 4; ++step) {
#pragma unroll
      for (int h = 0; h < kHalvesN; ++h) {
        wgmma_m64n128k16(acc[h], wgmma_descriptor(a_tile + 32 * step),
                         wgmma_descriptor(b_tile + unsigned(h * 128 * 128) + 32 * step));
      }
    }
    wgmma_commit();
    wgmma_wait<1>();
  }
  wgmma_wait<0>();

  const int lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % 4;
  const int row = m0 + warpgroup * 64 + warp * 16 + lane / 4;
#pragma unroll
  for (int h = 0; h < kHalvesN; ++h) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int column = n0 + h * 128 + j * 8 + 2 * (lane % 4);
      if (column >= N) continue;
      if (row < M)
        *reinterpret_cast<__half2*>(out + size_t(row) * N + column) =
            __floats2half2_rn(acc[h][4 * j], acc[h][4 * j + 1]);
      if (row + 8 < M)
        *reinterpret_cast<__half2*>(out + size_t(row + 8) * N + column) =
            __floats2half2_rn(acc[h][4 * j + 2], acc[h][4 * j + 3]);
    }
  }
#else
  __trap();  // compiled for a target without wgmma: never launched (legal() requires sm_90)
#endif
}
