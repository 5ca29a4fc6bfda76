// What q4jit knows about one GPU, filled by a backend (runtime/cuda/, runtime/hip/) and read by
// kernel families' legality rules, the tuner and `q4jit devices`. Plain values, no vendor types.
#pragma once

#include <cstdint>
#include <string>

namespace q4jit {

struct DeviceInfo {
  int ordinal = 0;                   // index among the backend's devices
  std::string name;                  // "NVIDIA H100 80GB HBM3"
  std::string uuid;                  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  int cc_major = 0;                  // compute capability, 9 for sm_90; 0 on AMD (see arch_name)
  int cc_minor = 0;                  // 0 for sm_90
  std::string arch_name;             // AMD: "gfx90a:sramecc+:xnack-" (gcnArchName); empty on NVIDIA
  int warp_size = 32;                // threads per warp: 64 on AMD CDNA, 32 on RDNA and NVIDIA
  int sm_count = 0;                  // streaming multiprocessors
  int max_threads_per_block = 0;     // 1024 on every supported GPU
  int64_t smem_per_block = 0;        // bytes without opt-in (48 KB)
  int64_t smem_per_block_optin = 0;  // bytes a kernel may request with the attribute raised
  int64_t smem_per_sm = 0;           // bytes per multiprocessor
  int64_t l2_bytes = 0;              // L2 cache size
  int64_t global_memory_bytes = 0;   // total device memory
  int64_t memory_clock_khz = 0;      // peak memory clock
  int memory_bus_width_bits = 0;     // bus width; with the clock gives the peak bandwidth
  int driver_version = 0;            // cuDriverGetVersion: 13000 for CUDA 13.0 (HIP: 50221153)

  // 90 for compute capability 9.0: the number in "sm_90".
  int sm() const { return cc_major * 10 + cc_minor; }
};

}  // namespace q4jit
