// Device helpers of the tensor-core kernels (q4_mma.cu, gemm_f16.cu): cp.async copies into shared
// memory, ldmatrix, the mma.sync m16n8k16 fp16 x fp16 -> fp32 instruction (sm_80+), and the
// epilogue that writes a block's fp32 tile as fp16, directly or through a split-K workspace.
// Holds no kernels. cp.async is used without L2 cache-hint policies (createpolicy): NVRTC 13.0
// miscompiles those for sm_90 (kernel_sources/README.md).
#pragma once

#include "portable.cuh"

namespace q4jit_device {

__device__ __forceinline__ unsigned shared_address(const void* pointer) {
  return static_cast<unsigned>(__cvta_generic_to_shared(pointer));
}

// 16 bytes global -> shared, bypassing L1; src_bytes < 16 zero-fills the rest (0: all zeros, and
// the source is not read).
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(shared_address(shared)),
               "l"(global), "r"(src_bytes));
}

// 4 bytes global -> shared (through L1: the small, reused operands); 0 source bytes zero-fills.
__device__ __forceinline__ void cp_async_4(void* shared, const void* global, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(shared_address(shared)),
               "l"(global), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;");
}

// Waits until at most kPending committed groups of this thread are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
}

// Four 8x8 fp16 matrices: lanes 8i..8i+7 give the row addresses of matrix i, register i receives
// matrix i in the mma fragment layout (row lane / 4, columns 2 * (lane % 4) and + 1).
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row_address)));
}

// d += a * b for one m16n8k16 tile. With g = lane / 4, t = lane % 4:
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, +9], a[3] = A[g+8][2t+8, +9]
//   b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   d[0], d[1] = C[g][2t, 2t+1], d[2], d[3] = C[g+8][2t, 2t+1]
// Not volatile: it only reads and writes registers, so the compiler may interleave independent
// mma with loads and with each other.
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4],
                                          const unsigned (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ unsigned half2_bits(__half2 value) {
  return *reinterpret_cast<unsigned*>(&value);
}

// Writes the block's fp32 tile (shared memory, [kTileM][kStride]) as fp16 out[m0.., n0..], bounds
// checked (N even). With gridDim.z > 1 (split-K) the blocks of one output tile add into the fp32
// workspace [M, N] instead; the last to arrive (its tile counter) writes out and leaves workspace
// and counter zero again, so the next launch needs no memset.
template <int kThreads, int kTileM, int kTileN, int kStride>
__device__ void store_tile(const float* tile, __half* out, float* workspace,
                           unsigned* tile_counters, int M, int N, int m0, int n0) {
  static_assert(kTileN % 2 == 0, "pairs of columns");
  const bool split = gridDim.z > 1;
  for (int i = threadIdx.x; i < kTileM * kTileN / 2; i += kThreads) {
    const int m = i / (kTileN / 2), n = 2 * (i % (kTileN / 2));
    if (m0 + m >= M || n0 + n >= N) continue;
    const float2 value = make_float2(tile[m * kStride + n], tile[m * kStride + n + 1]);
    const size_t at = size_t(m0 + m) * N + n0 + n;
    if (!split) {
      *reinterpret_cast<__half2*>(out + at) = __floats2half2_rn(value.x, value.y);
    } else {
      atomicAdd(workspace + at, value.x);
      atomicAdd(workspace + at + 1, value.y);
    }
  }
  if (!split) return;
  __shared__ bool last_block;
  __threadfence();
  __syncthreads();
  const unsigned counter = blockIdx.y * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) last_block = atomicAdd(tile_counters + counter, 1u) == gridDim.z - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < kTileM * kTileN / 2; i += kThreads) {
    const int m = i / (kTileN / 2), n = 2 * (i % (kTileN / 2));
    if (m0 + m >= M || n0 + n >= N) continue;
    const size_t at = size_t(m0 + m) * N + n0 + n;
    const float2 sum = __ldcg(reinterpret_cast<const float2*>(workspace + at));
    __stcg(reinterpret_cast<float2*>(workspace + at), make_float2(0.0f, 0.0f));
    *reinterpret_cast<__half2*>(out + at) = __floats2half2_rn(sum.x, sum.y);
  }
  if (threadIdx.x == 0) tile_counters[counter] = 0;
}

}  // namespace q4jit_device
