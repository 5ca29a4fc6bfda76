// dequantize_q4: GPTQ 4-bit weights -> fp16 W [N, K] row-major in ORIGINAL row order, the layout
// of an fp16 checkpoint, so gemm_f16.cu multiplies x as given (no gather at prefill).
// W[n][k] = half((q(s, n) - z(g(s), n)) * scales[g(s)][n]) with s the sorted row of original row k
// (s = k without act-order): bit-identical to rounding dequantize_gptq's fp32 value to fp16 (the
// product of two fp16 values is rounded once). The host descriptor is dequantize_q4.hpp.
// Not here: the GEMM (gemm_f16.cu), the fused tensor-core path (q4_mma.cu).
//
// Layout:    qweight [K/8, N] (rows sorted when act-order) | scales [G, N] fp16 | qzeros [G, N/8]
//            | sorted_of [K] int32 original row -> sorted row (the inverse of x_map), or null |
//            W [N, K] fp16. K % 8 == 0, N % 8 == 0.
// Geometry:  grid (ceil(N / 64), ceil(K / kTileK)), block kThreads; a 64 x kTileK tile of W is
//            decoded with column-coalesced reads of qweight, transposed in shared memory, and
//            written as 16-byte row chunks.
// Parameters: kThreads 128, 256; kTileK 64, 128.
#include "portable.cuh"

namespace dequantize_q4_detail {

// Rows in weight order (no act-order permutation): each thread decodes whole packed words, the 8
// rows of one column a word holds (one group: group_size is a multiple of 8), into 8 consecutive
// halves of the transposed tile, one 16-byte store (a pitch of 16 mod 128 bytes keeps a
// quarter-warp's stores on distinct banks).
template <int kThreads, int kTileK, int kPitch>
__device__ __forceinline__ void decode_words(__half* tile, const unsigned* __restrict__ qweight,
                                             const __half* __restrict__ scales,
                                             const unsigned* __restrict__ qzeros, int K, int N,
                                             int group_size, int n0, int k0) {
  constexpr int kColumns = 64, kWords = kColumns * (kTileK / 8);
  for (int w = threadIdx.x; w < kWords; w += kThreads) {
    const int column = w % kColumns, word_row = w / kColumns;
    const int n = n0 + column, k = k0 + 8 * word_row;
    if (n >= N || k >= K) continue;
    const int group = k / group_size;
    const unsigned q = __ldg(qweight + size_t(k / 8) * N + n);
    const int z = int((__ldg(qzeros + size_t(group) * (N / 8) + n / 8) >> (4 * (n % 8))) & 15u) + 1;
    const __half scale = scales[size_t(group) * N + n];
    __align__(16) __half values[8];
#pragma unroll
    for (int j = 0; j < 8; ++j)
      values[j] = __hmul(__int2half_rn(int((q >> (4 * j)) & 15u) - z), scale);
    *reinterpret_cast<uint4*>(tile + column * kPitch + 8 * word_row) =
        *reinterpret_cast<const uint4*>(values);
  }
}

}  // namespace dequantize_q4_detail

template <int kThreads = 256, int kTileK = 64>
__global__ void __launch_bounds__(kThreads)
    dequantize_q4_kernel(__half* __restrict__ weight, const unsigned* __restrict__ qweight,
                         const __half* __restrict__ scales, const unsigned* __restrict__ qzeros,
                         const int* __restrict__ sorted_of, int K, int N, int group_size) {
  q4jit_device::grid_dependency_begin();
  static_assert(kThreads == 128 || kThreads == 256, "kThreads: 128 or 256");
  static_assert(kTileK == 64 || kTileK == 128, "kTileK: 64 or 128");
  constexpr int kColumns = 64;
  constexpr int kPitch = kTileK + 8;  // halves; rows stay 16-byte aligned
  __shared__ __align__(16) __half tile[kColumns * kPitch];
  using dequantize_q4_detail::decode_words;

  const int n0 = blockIdx.x * kColumns, k0 = blockIdx.y * kTileK;
  const int column = threadIdx.x % kColumns;
  const int n = n0 + column;
  if (sorted_of == nullptr) {
    decode_words<kThreads, kTileK, kPitch>(tile, qweight, scales, qzeros, K, N, group_size, n0, k0);
  } else if (n < N) {
    for (int kl = threadIdx.x / kColumns; kl < kTileK; kl += kThreads / kColumns) {
      const int k = k0 + kl;
      if (k >= K) break;
      const int s = sorted_of != nullptr ? __ldg(sorted_of + k) : k;
      const int group = s / group_size;
      const unsigned q = (__ldg(qweight + size_t(s / 8) * N + n) >> (4 * (s % 8))) & 15u;
      const unsigned z =
          ((__ldg(qzeros + size_t(group) * (N / 8) + n / 8) >> (4 * (n % 8))) & 15u) + 1u;
      tile[column * kPitch + kl] =
          __hmul(__int2half_rn(int(q) - int(z)), scales[size_t(group) * N + n]);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kColumns * (kTileK / 8); i += kThreads) {
    const int r = i / (kTileK / 8), k = 8 * (i % (kTileK / 8));
    if (n0 + r >= N || k0 + k >= K) continue;
    *reinterpret_cast<uint4*>(weight + size_t(n0 + r) * K + k0 + k) =
        *reinterpret_cast<const uint4*>(tile + r * kPitch + k);
  }
}
