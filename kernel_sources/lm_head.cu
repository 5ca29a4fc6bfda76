// lm_head: the output projection as an fp16 GEMV for a few rows, logits[M, V] = x[M, C] W^T with
// W [V, C] fp16 row-major (the checkpoint's lm_head.weight), fp32 accumulation, written as fp32
// (straight to the sampler: no separate conversion launch) or fp16. The host descriptor is
// lm_head.hpp; the CPU reference is ref::matmul. Not here: the q4 matmuls, a tensor-core GEMM for
// long prefills (gemm_f16 family).
//
// Layout:      x [M, C] fp16 | weight [V, C] fp16 | out [M, V] fp32 or fp16
// Geometry:    grid (ceil(V / kWarps), ceil(M / kRows)), block (kWarps * 32), no shared memory.
//              One warp per vocabulary row: lanes stride over C by 8 fp16 (16-byte loads) and the
//              warp reduces by shuffles; the kRows activation rows share each weight load.
// Parameters:  kWarps 2, 4, 8, 16; kRows 1, 2, 4, 8 (rows per block; M above it takes more
//              blocks, each reading the weights again); kFloatOut: fp32 (1) or fp16 (0) output.
//              C % 8 == 0. Parameters change only the fp32 summation order.
#include "portable.cuh"

#include "attention_common.cuh"
#include "q4jit_common.cuh"

template <int kWarps = 8, int kRows = 1, bool kFloatOut = true>
__global__ void __launch_bounds__(kWarps * 32)
    lm_head_kernel(void* out, const __half* x, const __half* weight, int rows, int hidden,
                   int vocab) {
  q4jit_device::grid_dependency_begin();
  static_assert(kWarps == 2 || kWarps == 4 || kWarps == 8 || kWarps == 16, "kWarps: 2 to 16");
  static_assert(kRows == 1 || kRows == 2 || kRows == 4 || kRows == 8, "kRows: 1, 2, 4, 8");
  const int lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  if (n >= vocab) return;  // whole warps leave together: no block-wide sync below
  const int m0 = blockIdx.y * kRows;
  const __half* weight_row = weight + size_t(n) * hidden;
  float sums[kRows] = {};
  for (int c = lane * 8; c < hidden; c += 256) {
    float w[8];
    q4jit_attention::load8(w, weight_row + c);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (m0 + r >= rows) break;
      float a[8];
      q4jit_attention::load8(a, x + size_t(m0 + r) * hidden + c);
#pragma unroll
      for (int j = 0; j < 8; ++j) sums[r] += w[j] * a[j];
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float total = q4jit_device::warp_sum(sums[r]);
    if (lane != 0 || m0 + r >= rows) continue;
    const size_t at = size_t(m0 + r) * vocab + n;
    if (kFloatOut) {
      static_cast<float*>(out)[at] = total;
    } else {
      static_cast<__half*>(out)[at] = __float2half(total);
    }
  }
}
