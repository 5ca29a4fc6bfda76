// embedding: the token embedding gather, x[t, :] = table[tokens[t], :] in fp16.
// The host descriptor is embedding.hpp. Not here: the lm_head (lm_head.cu).
//
// Layout:      table [V, C] fp16 row-major | tokens [T] int32 | out [T, C] fp16
//              bad_tokens: one int32 counter, or null. A token outside [0, V) never reads the
//              table: its row is written as zeros and the counter is incremented once, so the
//              caller (which zeroes the counter first) can report the bad input.
// Geometry:    grid (T), block (kBlockThreads), no shared memory.
// Parameters:  kBlockThreads 64..512 (whole warps), kVectorWidth 1, 2, 4, 8 fp16 per access
//              (C must be a multiple of it). A copy: parameters never change results.
#include "portable.cuh"

#include "q4jit_common.cuh"

template <int kBlockThreads = 128, int kVectorWidth = 8>
__global__ void __launch_bounds__(kBlockThreads)
    embedding_kernel(__half* out, const __half* table, const int* tokens, int vocab, int hidden,
                     int* bad_tokens) {
  q4jit_device::grid_dependency_begin();
  static_assert(kBlockThreads % 32 == 0 && kBlockThreads >= 64 && kBlockThreads <= 512,
                "kBlockThreads: whole warps, 64 to 512");
  static_assert(kVectorWidth == 1 || kVectorWidth == 2 || kVectorWidth == 4 || kVectorWidth == 8,
                "kVectorWidth: 1, 2, 4 or 8");
  using Vector = q4jit_device::HalfVector<kVectorWidth>;
  const size_t t = blockIdx.x;
  const int token = tokens[t];
  const bool in_range = token >= 0 && token < vocab;
  if (!in_range && threadIdx.x == 0 && bad_tokens != nullptr) atomicAdd(bad_tokens, 1);
  const Vector* row =
      reinterpret_cast<const Vector*>(table + size_t(in_range ? token : 0) * hidden);
  Vector* out_row = reinterpret_cast<Vector*>(out + t * hidden);
  Vector zero;
#pragma unroll
  for (int j = 0; j < kVectorWidth; ++j) zero.value[j] = __float2half(0.0f);
  for (int i = threadIdx.x; i < hidden / kVectorWidth; i += kBlockThreads) {
    out_row[i] = in_range ? row[i] : zero;
  }
}
