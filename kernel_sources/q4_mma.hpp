// Host descriptor of the q4_mma family (kernels in q4_mma.cu): the tensor-core GPTQ 4-bit GEMM
// for M from about 8 up. Its tuning parameters in one place, legality, the tuning space, launch
// geometry, workspace and the name expression that instantiates the template.
// Not here: compiling, loading and launching (tuner/q4_mma_runner.hpp), the GEMV path for small M
// (q4_matmul.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct Q4MmaShape {
  int64_t M = 16;          // rows of x (tokens); any M >= 1
  int64_t K = 0;           // in_features; multiple of 32
  int64_t N = 0;           // out_features; multiple of 8
  int64_t group_size = 0;  // a multiple of 32 dividing K (K for no-group)
  bool act_order = false;  // rows sorted by group at load; x is gathered through x_map
};

// Parameters change speed, never results beyond fp32 summation order (weights are rounded to
// fp16 after scaling in every config): relative error <= 2e-3 against the fp32 reference.
struct Q4MmaConfig {
  int tile_m = 16;   // tm: 16, 32, 64 rows of x per block (m16 tiles per warp: tm / 16)
  int tile_n = 128;  // tn: 64, 128, 256 output columns per block
  int tile_k = 64;   // tk: 32, 64, 128, 256 rows of K per pipeline stage
  int warps_n = 4;   // wn: warps side by side along N; (tn / wn) % 8 == 0
  int warps_k = 1;   // wk: 1, 2, 4 warps sharing each K-tile (summed in shared memory);
                     //     tk / 32 % wk == 0; wn * wk <= 8; (tm / 16) * (tn / wn / 8) <= 16
  int stages = 3;    // st: 2, 3, 4 cp.async pipeline stages
  int split_k = 2;   // sk: 1, 2, 4, 8 blocks along K per output tile (fp32 atomics into the
                     //     workspace, the last block writes out); a launch parameter, grid z
};

struct Q4MmaGeometry {
  unsigned grid_x = 1;  // column tiles: ceil(N / tn)
  unsigned grid_y = 1;  // row tiles: ceil(M / tm)
  unsigned grid_z = 1;  // sk
  unsigned block_x = 1;
  int64_t dynamic_smem_bytes = 0;
};

// The scratch one launch needs (split-K only): an fp32 [M, N] sum and a counter per output tile,
// zero before the first launch; every launch leaves them zero again.
struct Q4MmaWorkspace {
  int64_t counters_offset = 0;
  int64_t bytes = 0;  // 0 without split-K; all of it must start zero
};

std::vector<TuningParameter> q4_mma_parameters();
// Whether cfg may run this shape on this device (mirrors the static_asserts in q4_mma.cu, plus
// the shape's rules and sm_80+ for mma.sync and cp.async).
bool legal(const Q4MmaConfig& cfg, const DeviceInfo& device, const Q4MmaShape& shape);
// Whether the template instantiates (the static_asserts alone).
bool instantiable(const Q4MmaConfig& cfg);
// The tuning space, shape-independent, default first: nine warp layouts x tm x stages x sk.
std::vector<Q4MmaConfig> q4_mma_configs();
std::vector<Q4MmaConfig> space(const DeviceInfo& device, const Q4MmaShape& shape);
// The configuration to use for a shape before any tuning: the measured best for its row range
// when legal, else the first legal one (the default when none is: legal() says which).
Q4MmaConfig q4_mma_default(const DeviceInfo& device, const Q4MmaShape& shape);
Q4MmaGeometry geometry(const Q4MmaConfig& cfg, const Q4MmaShape& shape);
Q4MmaWorkspace workspace(const Q4MmaConfig& cfg, const Q4MmaShape& shape);
// Shared memory of one block (stages or epilogue tile, as q4_mma_smem_bytes() in q4_mma.cu).
int64_t q4_mma_smem_bytes(const Q4MmaConfig& cfg);
// "q4_mma_kernel<16, 128, 64, 4, 1, 3>" (sk is not a template argument)
std::string name_expression(const Q4MmaConfig& cfg);
// "tm16.tn128.tk64.wn4.wk1.st3.sk2"
std::string to_string(const Q4MmaConfig& cfg);

KernelFamily q4_mma_family();

}  // namespace q4jit
