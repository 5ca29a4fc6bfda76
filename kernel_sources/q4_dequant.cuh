// Device helpers of the q4 kernels: weight-stream loads and the 4-bit GPTQ dequantize-and-dot
// step. Embedded with the templates and included by name from q4_matmul.cu; holds no kernels.
//
// Packing (../shared/docs/GPTQ_FORMAT.md): one uint32 of qweight holds rows 8r..8r+7 of one column,
// row 8r+j in bits 4j..4j+3. Masking (word >> 4j) & 0x000f000f puts rows j and j+4 into the two
// halves of a half2; OR-ing 0x6400 into each half makes them the fp16 values 1024 + q, and
// subtracting the half2 (1024 + zero) leaves (q - zero) exactly (|q - zero| <= 16).
#pragma once

#include "portable.cuh"

namespace q4jit_device {

// kWords consecutive uint32 of the weight stream, read once: non-coherent path, no L1 allocation
// (the stream is touched once per pass and would only evict the staged activations).
template <int kWords>
struct WeightWords {
  unsigned value[kWords];
};

template <int kWords>
__device__ __forceinline__ WeightWords<kWords> load_weight_words(const unsigned* address) {
  WeightWords<kWords> words;
#if Q4JIT_INLINE_PTX
  if constexpr (kWords == 4) {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(words.value[0]), "=r"(words.value[1]), "=r"(words.value[2]),
                   "=r"(words.value[3])
                 : "l"(address));
  } else if constexpr (kWords == 2) {
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
                 : "=r"(words.value[0]), "=r"(words.value[1])
                 : "l"(address));
  } else {
    static_assert(kWords == 1, "weight loads of 1, 2 or 4 words");
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];"
                 : "=r"(words.value[0])
                 : "l"(address));
  }
#else
  static_assert(kWords == 1 || kWords == 2 || kWords == 4, "weight loads of 1, 2 or 4 words");
#pragma unroll
  for (int i = 0; i < kWords; ++i) words.value[i] = __builtin_nontemporal_load(address + i);
#endif
  return words;
}

// A column's running sum of group-scaled fp16 dots: fp32, or (kHalf) half2 with the two lanes
// added at the end.
template <bool kHalf>
struct Accumulator;
template <>
struct Accumulator<false> {
  float value = 0.0f;
  __device__ void add(__half scale, __half2 dot) {
    value = fmaf(__half2float(scale), __low2float(dot) + __high2float(dot), value);
  }
  __device__ float total() const { return value; }
};
template <>
struct Accumulator<true> {
  __half2 value = __half2half2(__ushort_as_half(0));
  __device__ void add(__half scale, __half2 dot) {
    value = __hfma2(__half2half2(scale), dot, value);
  }
  __device__ float total() const { return __low2float(value) + __high2float(value); }
};

// (a & b) | c in one instruction.
__device__ __forceinline__ unsigned and_or(unsigned a, unsigned b, unsigned c) {
#if Q4JIT_INLINE_PTX
  unsigned d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  return (a & b) | c;
#endif
}

// The 8 weights of one packed word as (q - zero) half2 pairs: pair j holds rows j and j + 4.
// zero_1024 is the half2 (1024 + zero, 1024 + zero).
__device__ __forceinline__ void dequantize_word(unsigned word, __half2 zero_1024, __half2 (&w)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    unsigned biased = and_or(word >> (4 * j), 0x000f000fu, 0x64006400u);
    w[j] = __hsub2(*reinterpret_cast<__half2*>(&biased), zero_1024);
  }
}

// The same 8 weights with the zero folded into two per-group constants, fewer instructions:
// rows j, j + 4 for odd j come out of the mask as 1024 + 16 q, and (1024 + 16 q) / 16 - (64 + z)
// = q - z exactly. low_zero is (1024 + z, 1024 + z), high_zero (-(64 + z), -(64 + z)).
__device__ __forceinline__ void dequantize_word(unsigned word, __half2 low_zero, __half2 high_zero,
                                                __half2 (&w)[4]) {
  const unsigned shifted = word >> 8;
  unsigned biased[4] = {
      and_or(word, 0x000f000fu, 0x64006400u), and_or(word, 0x00f000f0u, 0x64006400u),
      and_or(shifted, 0x000f000fu, 0x64006400u), and_or(shifted, 0x00f000f0u, 0x64006400u)};
  const __half2 sixteenth = __half2half2(__ushort_as_half(0x2c00));  // 1/16
  w[0] = __hsub2(*reinterpret_cast<__half2*>(&biased[0]), low_zero);
  w[1] = __hfma2(*reinterpret_cast<__half2*>(&biased[1]), sixteenth, high_zero);
  w[2] = __hsub2(*reinterpret_cast<__half2*>(&biased[2]), low_zero);
  w[3] = __hfma2(*reinterpret_cast<__half2*>(&biased[3]), sixteenth, high_zero);
}

// The two constants of that dequantize for a zero z in 1..16.
__device__ __forceinline__ __half2 low_zero_of(unsigned zero) {
  return __half2half2(__ushort_as_half(static_cast<unsigned short>(0x6400u + zero)));
}
__device__ __forceinline__ __half2 high_zero_of(unsigned zero) {
  return __half2half2(__ushort_as_half(static_cast<unsigned short>(0xd400u + (zero << 4))));
}

// acc + sum over j of w[j] * x[j] in fp16, two lanes kept apart.
__device__ __forceinline__ __half2 dot_word(const __half2 (&w)[4], const __half2 (&x)[4],
                                            __half2 acc) {
  acc = __hfma2(w[0], x[0], acc);
  acc = __hfma2(w[1], x[1], acc);
  acc = __hfma2(w[2], x[2], acc);
  return __hfma2(w[3], x[3], acc);
}

// sum over j of w[j] * x[j], two lanes (rows j and rows j + 4) kept apart; fp16 arithmetic over
// 4 products of an exact small integer and an fp16 activation.
__device__ __forceinline__ __half2 dot_word(const __half2 (&w)[4], const __half2 (&x)[4]) {
  __half2 sum = __hmul2(w[0], x[0]);
  sum = __hfma2(w[1], x[1], sum);
  sum = __hfma2(w[2], x[2], sum);
  return __hfma2(w[3], x[3], sum);
}

// The half2 (1024 + z, 1024 + z) for a zero z in 1..16.
__device__ __forceinline__ __half2 zero_1024(unsigned zero) {
  return __half2half2(__ushort_as_half(static_cast<unsigned short>(0x6400u + zero)));
}

// 8 consecutive activations x[0..7] as the pairs dot_word expects: (x0, x4), (x1, x5), ...
__device__ __forceinline__ void pair_activations(const __half (&x)[8], __half2 (&pairs)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) pairs[j] = __halves2half2(x[j], x[j + 4]);
}

// The same from 8 consecutive fp16 loaded as one uint4 (halves 2i, 2i+1 in word i), in registers.
__device__ __forceinline__ void pair_activations(uint4 raw, __half2 (&pairs)[4]) {
  const unsigned words[4] = {__byte_perm(raw.x, raw.z, 0x5410), __byte_perm(raw.x, raw.z, 0x7632),
                             __byte_perm(raw.y, raw.w, 0x5410), __byte_perm(raw.y, raw.w, 0x7632)};
#pragma unroll
  for (int j = 0; j < 4; ++j) pairs[j] = *reinterpret_cast<const __half2*>(&words[j]);
}

}  // namespace q4jit_device
