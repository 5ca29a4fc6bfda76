// Host descriptor of the lm_head family (kernel in lm_head.cu): fp16 GEMV for M = 1..8 rows (and
// more, in row blocks) with fp32 or fp16 logits. Parameters change only the summation order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct LmHeadShape {
  int64_t rows = 1;    // M: tokens whose logits are wanted
  int64_t hidden = 0;  // C, % 8 == 0
  int64_t vocab = 0;   // V
};

struct LmHeadConfig {
  int warps = 8;          // warps per block, one vocabulary row each: 2, 4, 8, 16
  int rows = 1;           // activation rows per block: 1, 2, 4, 8
  bool float_out = true;  // logits as fp32 (for the sampler) or fp16
};

struct LmHeadGeometry {
  unsigned grid_x = 1;  // ceil(V / warps)
  unsigned grid_y = 1;  // ceil(M / rows)
  unsigned block_x = 1;
};

std::vector<TuningParameter> lm_head_parameters();
bool legal(const LmHeadConfig& cfg, const DeviceInfo& device, const LmHeadShape& shape);
std::vector<LmHeadConfig> lm_head_configs();  // default first
// The legal configs with the wanted output type.
std::vector<LmHeadConfig> space(const DeviceInfo& device, const LmHeadShape& shape, bool float_out);
LmHeadGeometry geometry(const LmHeadConfig& cfg, const LmHeadShape& shape);
std::string name_expression(const LmHeadConfig& cfg);  // "lm_head_kernel<8, 1, true>"
std::string to_string(const LmHeadConfig& cfg);        // "w8.r1.f32"

KernelFamily lm_head_family();

}  // namespace q4jit
