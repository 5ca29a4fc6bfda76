// Host descriptor of the dequantize_q4 family (kernel in dequantize_q4.cu): GPTQ 4-bit -> fp16
// W [N, K] in original row order, the input of gemm_f16 (the dequantize + GEMM path for prefill).
// Not here: launching (tuner/gemm_runner.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct DequantizeShape {
  int64_t K = 0;           // multiple of 8
  int64_t N = 0;           // multiple of 8
  int64_t group_size = 0;  // divides K
};

// Parameters change speed only: the output is bit-exact in every config.
struct DequantizeConfig {
  int block_threads = 256;  // bt: 128, 256
  int tile_k = 64;          // tk: 64, 128 rows of K per block (64 columns of N each)
};

struct DequantizeGeometry {
  unsigned grid_x = 1;  // ceil(N / 64)
  unsigned grid_y = 1;  // ceil(K / tk)
  unsigned block_x = 1;
};

std::vector<TuningParameter> dequantize_q4_parameters();
bool legal(const DequantizeConfig& cfg, const DeviceInfo& device, const DequantizeShape& shape);
std::vector<DequantizeConfig> dequantize_q4_configs();  // default first
DequantizeGeometry geometry(const DequantizeConfig& cfg, const DequantizeShape& shape);
// "dequantize_q4_kernel<256, 64>"
std::string name_expression(const DequantizeConfig& cfg);
// "bt256.tk64"
std::string to_string(const DequantizeConfig& cfg);
// The kernel's sorted_of operand: original row -> sorted row, the inverse of GptqLinear::x_map.
std::vector<int32_t> sorted_row_of(const std::vector<int32_t>& x_map);

KernelFamily dequantize_q4_family();

}  // namespace q4jit
