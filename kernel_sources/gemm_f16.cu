// gemm_f16: out[M, N] = x[M, K] * W[N, K]^T in fp16 with fp32 accumulation on tensor cores
// (mma.sync m16n8k16, sm_80+). W is row-major [N, K]: the fp16 checkpoint layout (the fp16 model
// path, the lm_head) and what dequantize_q4.cu writes. The host descriptor is gemm_f16.hpp; the
// CPU reference is ref::matmul. Embedded and compiled by NVRTC at run time; with the template
// defaults it also builds standalone under nvcc (sm_80+) for ncu.
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
//            grid's z (a launch parameter).
#include <cuda_fp16.h>

#include "mma_common.cuh"

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
