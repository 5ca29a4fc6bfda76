// The one header through which every kernel template meets its compiler: NVRTC for NVIDIA or
// hiprtc for AMD. Templates include it (or q4jit_common.cuh, which does) instead of <cuda_fp16.h>.
// Under NVRTC it is exactly <cuda_fp16.h>, so CUDA builds are unchanged; under hiprtc it supplies
// what hiprtc 5.2 lacks of the CUDA names the kernels use. Not here: device helpers
// (q4jit_common.cuh) and kernels. Families that need NVIDIA-only instructions (mma.sync,
// cp.async: q4_mma, gemm_f16) are not compiled for AMD at all (KernelFamily::amd).
//
// Lanes:   kernels are written for warps of kWarpLanes = 32 threads (lane = threadIdx.x % 32).
//          An AMD wavefront has kWaveSize threads, 64 on CDNA (gfx908, gfx90a) and 32 on RDNA
//          (gfx1030); a 64-wide wavefront holds two such warps. The shuffles below stay inside
//          each 32-lane warp (width 32), so a warp's reduction or broadcast means the same on
//          both, and the warp-synchronous steps hold because a wavefront runs in lockstep.
// Types:   hiprtc defines __half, __half2, their arithmetic (__hfma2, __hsub2, ...), uint4 and
//          atomicAdd on float itself; hip/hip_fp16.h must not be included under hiprtc (it
//          redefines them).
// PTX:     Q4JIT_INLINE_PTX is 1 under NVRTC, 0 under hiprtc. Every inline PTX block is guarded
//          by it and has a portable alternative.
#pragma once

#if defined(__HIPCC_RTC__) || defined(__HIP__)
#define Q4JIT_HIP 1
#define Q4JIT_INLINE_PTX 0
#else
#define Q4JIT_HIP 0
#define Q4JIT_INLINE_PTX 1
#include <cuda_fp16.h>
#endif

namespace q4jit_device {

// Enumerators, not constexpr variables: NVRTC's -default-device makes a namespace-scope variable a
// __device__ global, emitted into every module.
enum : int {
  // Threads per warp as the kernels count them, on every platform.
  kWarpLanes = 32,
#if Q4JIT_HIP
  // The hardware wavefront: hiprtc's own value for the --offload-arch.
  kWaveSize = __AMDGCN_WAVEFRONT_SIZE,
#else
  kWaveSize = 32,
#endif
};
static_assert(kWaveSize % kWarpLanes == 0, "a wavefront holds whole 32-lane warps");
#if Q4JIT_HIP && defined(Q4JIT_WAVE_SIZE)
// The host's table (runtime/hip/hip_archs.cpp) passes its value as -DQ4JIT_WAVE_SIZE.
static_assert(Q4JIT_WAVE_SIZE == kWaveSize,
              "the host's wavefront size for this architecture is not the compiler's");
#endif

}  // namespace q4jit_device

#if Q4JIT_HIP
// CUDA's full-warp shuffles (the only mask q4jit passes is 0xffffffff, all 32 lanes). HIP 5.2 has
// no *_sync shuffles; its __shfl_xor / __shfl take the segment width.
#define __shfl_xor_sync(mask, value, lane_mask) \
  __shfl_xor((value), (lane_mask), q4jit_device::kWarpLanes)
#define __shfl_sync(mask, value, source) __shfl((value), (source), q4jit_device::kWarpLanes)

// __syncwarp: a wavefront runs in lockstep, so what is left of it is ordering the lanes' memory
// accesses around the point (HIP 5.2 has no __syncwarp).
#define __syncwarp(...)                                    \
  do {                                                     \
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront"); \
    __builtin_amdgcn_wave_barrier();                       \
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront"); \
  } while (0)

// __ldcg / __stcg for fp32 (HIP 5.2 has them for __half only). The kernels use them for values
// other blocks wrote (split-K partial sums), read after a __threadfence and a counter: loads and
// stores coherent at device scope, which a relaxed agent-scope atomic is on every AMD GPU.
// Macros over q4jit's own functions, so a later HIP that declares them does not clash.
namespace q4jit_device {
__device__ __forceinline__ float load_device_coherent(const float* address) {
  return __hip_atomic_load(address, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
__device__ __forceinline__ void store_device_coherent(float* address, float value) {
  __hip_atomic_store(address, value, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
}  // namespace q4jit_device
#define __ldcg(address) q4jit_device::load_device_coherent(address)
#define __stcg(address, value) q4jit_device::store_device_coherent((address), (value))
#endif

// Programmatic dependent launch (sm_90): the engine may launch a kernel while the one before it
// on the stream is still running, so that its launch and prologue overlap the other's tail.
// Invariant: every kernel of kernel_sources/ calls grid_dependency_begin() before its first
// access to global memory that the kernel just before it may write; that waits for the previous
// grid to complete and its writes to be visible (a no-op when the launch did not ask for the
// overlap, and before sm_90), then lets the next kernel be launched once every block of this one
// has passed it. So a kernel starts only after the one before it has waited, and every kernel two
// or more launches back has completed: reads of what only those wrote may come before the wait.
// Two kinds do: weights, which no kernel writes (the q4 GEMVs prefetch them), and the fused decode
// attention's cache rows, length and position (attention_decode.cu, Early loads).
namespace q4jit_device {
__device__ __forceinline__ void grid_dependency_begin() {
#if Q4JIT_INLINE_PTX && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Asks L2 for the 128-byte line holding `address` (sm_90, where kernels launch overlapped: a
// kernel prefetches its weights before grid_dependency_begin; elsewhere nothing).
__device__ __forceinline__ void prefetch_l2(const void* address) {
#if Q4JIT_INLINE_PTX && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(address));
#endif
}
}  // namespace q4jit_device
