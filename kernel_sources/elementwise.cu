// elementwise: the Llama forward's pointwise ops on fp16, each one pass over memory.
//   silu_mul_kernel      out[M, F] = silu(gate) * up, gate and up read with row strides so that one
//                        fused gate_up matmul output [M, 2F] (gate in columns 0..F-1, up in
//                        F..2F-1) serves without a copy (gate = base, up = base + F, both strides
//                        2F).
//   residual_add_kernel  x[count] += y[count] (the residual stream), in place.
//   logits_f32_kernel    out[count] fp32 = in[count] fp16 (logits for the sampler).
// The host descriptors are elementwise.hpp; the CPU reference is model/ref (ref::silu_mul) or the
// plain definition. Not here: RMSNorm (rms_norm.cu), the matmuls.
//
// Geometry:    silu_mul: grid (ceil(F / (kBlockThreads * kVectorWidth)), M); the others a 1-D grid
//              of ceil(count / (kBlockThreads * kVectorWidth)) blocks; block kBlockThreads.
// Parameters:  kBlockThreads 64..512 (whole warps), kVectorWidth 1, 2, 4, 8 fp16 per access (F,
//              the strides and count must be multiples of it: pointers stay aligned).
// Arithmetic in fp32, one rounding to fp16 per output; parameters never change results.
#include "portable.cuh"

#include "q4jit_common.cuh"

template <int kBlockThreads, int kVectorWidth>
__device__ __forceinline__ void check_elementwise_parameters() {
  static_assert(kBlockThreads % 32 == 0 && kBlockThreads >= 64 && kBlockThreads <= 512,
                "kBlockThreads: whole warps, 64 to 512");
  static_assert(kVectorWidth == 1 || kVectorWidth == 2 || kVectorWidth == 4 || kVectorWidth == 8,
                "kVectorWidth: 1, 2, 4 or 8");
}

template <int kBlockThreads = 256, int kVectorWidth = 8>
__global__ void __launch_bounds__(kBlockThreads)
    silu_mul_kernel(__half* out, const __half* gate, int gate_stride, const __half* up,
                    int up_stride, int columns) {
  q4jit_device::grid_dependency_begin();
  check_elementwise_parameters<kBlockThreads, kVectorWidth>();
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const int vector = blockIdx.x * kBlockThreads + threadIdx.x;
  const int column = vector * kVectorWidth;
  if (column >= columns) return;
  const size_t row = blockIdx.y;
  const Vector g = *reinterpret_cast<const Vector*>(gate + row * gate_stride + column);
  const Vector u = *reinterpret_cast<const Vector*>(up + row * up_stride + column);
  Vector result;
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j)
    result.value[j] = q4jit_device::silu_mul_value(g.value[j], u.value[j]);
  *reinterpret_cast<Vector*>(out + row * columns + column) = result;
}

template <int kBlockThreads = 256, int kVectorWidth = 8>
__global__ void __launch_bounds__(kBlockThreads)
    residual_add_kernel(__half* x, const __half* y, long long count) {
  q4jit_device::grid_dependency_begin();
  check_elementwise_parameters<kBlockThreads, kVectorWidth>();
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const long long at =
      (static_cast<long long>(blockIdx.x) * kBlockThreads + threadIdx.x) * kVectorWidth;
  if (at >= count) return;
  Vector a = *reinterpret_cast<const Vector*>(x + at);
  const Vector b = *reinterpret_cast<const Vector*>(y + at);
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j)
    a.value[j] = q4jit_device::add_rounded(a.value[j], b.value[j]);
  *reinterpret_cast<Vector*>(x + at) = a;
}

template <int kBlockThreads = 256, int kVectorWidth = 8>
__global__ void __launch_bounds__(kBlockThreads)
    logits_f32_kernel(float* out, const __half* in, long long count) {
  q4jit_device::grid_dependency_begin();
  check_elementwise_parameters<kBlockThreads, kVectorWidth>();
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const long long at =
      (static_cast<long long>(blockIdx.x) * kBlockThreads + threadIdx.x) * kVectorWidth;
  if (at >= count) return;
  const Vector v = *reinterpret_cast<const Vector*>(in + at);
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j) out[at + j] = __half2float(v.value[j]);
}
