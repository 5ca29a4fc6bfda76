// Host descriptor of the attention_prefill family (kernel in attention_prefill.cu): causal tiled
// attention of T new queries over the KV cache, GQA in place. Parameters change only the fp32
// summation order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct AttentionPrefillShape {
  int64_t tokens = 1;          // T: queries in this call
  int64_t first_position = 0;  // p0: the first query's position; the cache holds 0 .. p0+T-1
  int64_t heads = 0;           // H
  int64_t kv_heads = 0;        // Hkv, divides H
  int64_t head_dim = 0;        // D
  int64_t q_stride = 0;        // elements between q rows; 0 means H * D
  int64_t out_stride = 0;      // elements between out rows; 0 means H * D
};

struct AttentionPrefillConfig {
  int head_dim = 128;  // D the kernel is built for: 64, 128
  int block_q = 32;    // queries per block: 16, 32, 64
  int block_k = 64;    // keys per shared-memory tile: 32, 64
  int warps = 4;       // warps per block: 2, 4, 8; 1 <= block_q / warps <= 8
};

struct AttentionPrefillGeometry {
  unsigned grid_x = 1;  // ceil(T / block_q)
  unsigned grid_y = 1;  // H
  unsigned block_x = 1;
  int64_t dynamic_smem_bytes = 0;  // past 48 KB the backend raises the function's limit
};

std::vector<TuningParameter> attention_prefill_parameters();
bool legal(const AttentionPrefillConfig& cfg, const DeviceInfo& device,
           const AttentionPrefillShape& shape);
std::vector<AttentionPrefillConfig> attention_prefill_configs();  // default first
std::vector<AttentionPrefillConfig> space(const DeviceInfo& device,
                                          const AttentionPrefillShape& shape);
AttentionPrefillGeometry geometry(const AttentionPrefillConfig& cfg,
                                  const AttentionPrefillShape& shape);
// "attention_prefill_kernel<128, 32, 64, 4>"
std::string name_expression(const AttentionPrefillConfig& cfg);
// "d128.bq32.bk64.w4"
std::string to_string(const AttentionPrefillConfig& cfg);

KernelFamily attention_prefill_family();

}  // namespace q4jit
