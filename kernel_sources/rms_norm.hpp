// Host descriptor of the rms_norm family (kernels in rms_norm.cu): its tuning parameters in one
// place, legality, the tuning space, launch geometry and the name expression that instantiates
// the template. Parameters change speed, never results beyond fp32 reduction order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct RmsNormShape {
  int64_t rows = 1;    // M: tokens in flight
  int64_t hidden = 0;  // elements per row
};

struct RmsNormConfig {
  int block_threads = 256;  // threads per block, one block per row: 64, 128, 256, 512, 1024
  int vector_width = 8;     // fp16 elements per load/store: 1, 2, 4, 8; hidden % width == 0
  bool stage_row = false;   // keep the row in dynamic shared memory (hidden * 2 bytes) between
                            // the sum and the scale passes instead of reading global twice
};

struct RmsNormGeometry {
  unsigned grid_x = 1;
  unsigned block_x = 1;
  int64_t dynamic_smem_bytes = 0;
};

// The parameters and their allowed values; the tuner enumerates them from here.
std::vector<TuningParameter> rms_norm_parameters();
// Whether cfg may run this shape on this device (mirrors the static_asserts in rms_norm.cu).
bool legal(const RmsNormConfig& cfg, const DeviceInfo& device, const RmsNormShape& shape);
// Every combination of the parameters' values (shape-independent), default first.
std::vector<RmsNormConfig> rms_norm_configs();
// The legal configs for a device and shape.
std::vector<RmsNormConfig> space(const DeviceInfo& device, const RmsNormShape& shape);
RmsNormGeometry geometry(const RmsNormConfig& cfg, const RmsNormShape& shape);
// "rms_norm_kernel<256, 8, false>"
std::string name_expression(const RmsNormConfig& cfg);
// The fused residual add + RMSNorm with an output order (add_rms_norm_kernel in rms_norm.cu), at
// cfg's block threads and vector width; its row is always staged (geometry with stage_row).
// "add_rms_norm_kernel<256, 8>"
std::string add_name_expression(const RmsNormConfig& cfg);
// Canonical config string "bt256.vw8.sr0": cache key part, DB column, report label, test name.
std::string to_string(const RmsNormConfig& cfg);

KernelFamily rms_norm_family();

}  // namespace q4jit
