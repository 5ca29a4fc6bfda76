// Device helpers of the sm_90a warpgroup tensor-core instructions (wgmma): the shared-memory
// matrix descriptor of a 128-byte-swizzled, K-major tile, the fences, and m64n128k16 with fp16
// inputs and fp32 accumulators, both operands read from shared memory. Holds no kernels; used by
// gemm_f16.cu's wgmma kernel. Every body is compiled only for sm_90a (the "a" target: wgmma exists
// on exactly that architecture); elsewhere the helpers are empty and the kernel traps.
//
// Tile layout the descriptors describe: rows of 64 fp16 (128 bytes, one K-slice of a row), the
// 16-byte chunk c of row r stored at r * 128 + ((c ^ (r % 8)) * 16), the tile 1024-byte aligned.
// Eight rows (1024 bytes) form one swizzle atom; consecutive atoms are 1024 bytes apart.
#pragma once

#include "portable.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define Q4JIT_WGMMA 1
#else
#define Q4JIT_WGMMA 0
#endif

namespace q4jit_device {

// Byte offset of chunk `chunk` (16 bytes) of row `row` in the swizzled tile.
__device__ __forceinline__ unsigned swizzled_offset(int row, int chunk) {
  return unsigned(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// Descriptor of the K-major tile starting at shared address `address` (the tile's start plus
// 32 bytes per k16 step inside its 128-byte rows; the hardware applies the swizzle to the
// resulting address, so the step needs no other change). Leading offset unused with this swizzle
// (1), stride 1024 bytes between 8-row atoms, swizzle mode 1 (128 bytes).
__device__ __forceinline__ unsigned long long wgmma_descriptor(unsigned address) {
  return (unsigned long long)((address & 0x3FFFF) >> 4) | (1ull << 16) | (64ull << 32) |
         (1ull << 62);
}

// Orders this thread's earlier accumulator register writes before the next wgmma.
__device__ __forceinline__ void wgmma_fence() {
#if Q4JIT_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if Q4JIT_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most kPending committed wgmma groups of this warpgroup are unfinished.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
#if Q4JIT_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Shared memory written by this thread's ordinary stores or cp.async becomes visible to the
// asynchronous proxy that wgmma reads through (before the barrier that publishes it).
__device__ __forceinline__ void fence_proxy_async_shared() {
#if Q4JIT_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// d += A[64 x 16] * B[16 x 128] for the warpgroup: A and B K-major tiles in shared memory.
// Thread t holds rows 16 (t / 32) + (t % 32) / 4 and + 8, columns 8 j + 2 (t % 4) and + 1 of
// n8 tile j in d[4 j .. 4 j + 3] (the mma.sync m16n8 layout, per warp and n8 tile).
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], unsigned long long a,
                                                 unsigned long long b) {
#if Q4JIT_WGMMA
  asm volatile(
      "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, "
      "%8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, "
      "%40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, accumulate, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(a), "l"(b), "n"(1));
#endif
}

}  // namespace q4jit_device
