// Host descriptor of the gemm_f16 family (kernels in gemm_f16.cu): out = x W^T in fp16 on tensor
// cores, W [N, K] row-major (fp16 checkpoints, the lm_head, dequantize_q4's output). Its tuning
// parameters in one place, legality, the tuning space, geometry, workspace, name expressions.
// Not here: compiling, loading and launching (tuner/gemm_runner.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct GemmShape {
  int64_t M = 1;  // rows of x
  int64_t K = 0;  // multiple of 8
  int64_t N = 0;  // rows of W; multiple of 2
};

// Parameters change speed, never results beyond fp32 summation order: relative error <= 2e-3
// against the fp32 reference on fp16 inputs.
struct GemmConfig {
  int tile_m = 64;   // tm: 16, 32, 64, 128 rows of x per block
  int tile_n = 128;  // tn: 32, 64, 128, 256 rows of W per block
  int tile_k = 32;   // tk: 32, 64 per pipeline stage
  int warps_m = 2;   // wm: 1, 2, 4 warps along M; tm % (16 * wm) == 0
  int warps_n = 2;   // wn: 1, 2, 4 warps along N; tn % (16 * wn) == 0;
                     //     (tm / wm / 16) * (tn / wn / 8) <= 32 mma tiles per warp
  int stages = 3;    // st: 2, 3, 4 cp.async pipeline stages
  int split_k = 1;   // sk: 1, 2, 4 blocks along K per output tile (grid z, fp32 workspace)
  // wg: 1 selects the sm_90a warpgroup kernel (gemm_f16_wgmma_kernel, legal on sm_90 only):
  // tm 64 or 128 (one or two warpgroups, wm = tm / 16, wn 1), tn 128 or 256, tk 64, st 3..6
  // within the opt-in shared memory, sk 1.
  int wgmma = 0;
};

struct GemmGeometry {
  unsigned grid_x = 1;  // ceil(N / tn)
  unsigned grid_y = 1;  // ceil(M / tm)
  unsigned grid_z = 1;  // sk
  unsigned block_x = 1;
  int64_t dynamic_smem_bytes = 0;
};

// Split-K scratch: fp32 [M, N] and a counter per output tile, zero before the first launch and
// left zero by every launch.
struct GemmWorkspace {
  int64_t counters_offset = 0;
  int64_t bytes = 0;  // 0 without split-K
};

std::vector<TuningParameter> gemm_f16_parameters();
bool instantiable(const GemmConfig& cfg);
bool legal(const GemmConfig& cfg, const DeviceInfo& device, const GemmShape& shape);
// The tuning space, shape-independent: the mma.sync kernel's thirteen block/warp layouts x two
// stage counts x sk (GemmConfig{} first), then the wgmma kernel's tiles and stage counts.
std::vector<GemmConfig> gemm_f16_configs();
// The legal configurations, the default first: the first wgmma tile where the wgmma kernel is
// legal (sm_90), twice as fast as mma.sync there; else GemmConfig{}.
std::vector<GemmConfig> space(const DeviceInfo& device, const GemmShape& shape);
GemmGeometry geometry(const GemmConfig& cfg, const GemmShape& shape);
GemmWorkspace workspace(const GemmConfig& cfg, const GemmShape& shape);
int64_t gemm_f16_smem_bytes(const GemmConfig& cfg);
// "gemm_f16_kernel<64, 128, 32, 2, 2, 3>" (sk is not a template argument);
// "gemm_f16_wgmma_kernel<128, 128, 4>"
std::string name_expression(const GemmConfig& cfg);
// "tm64.tn128.tk32.wm2.wn2.st3.sk1"; "wg.tm128.tn128.st4"
std::string to_string(const GemmConfig& cfg);

KernelFamily gemm_f16_family();

}  // namespace q4jit
