// Host descriptor of the rope_cache family (kernel in rope_cache.cu): RoPE on q in place and on k
// into the KV cache, v copied beside it, in one launch per layer. Parameters change speed only.
//
// The KV cache layout (shared with attention_decode and attention_prefill): two fp16 arrays, keys
// and values, each [layers][P_max][Hkv][D]. One position's keys for all KV heads are contiguous
// (Hkv * D elements), so the per-token append is one contiguous write and a layer's cache is a
// plain [P_max, Hkv, D] view (the CPU reference's layout); kernels take the layer's base pointer,
// kv_cache_layer_offset() elements into the array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

// Elements from the start of the key (or value) cache array to layer `layer`'s [P_max, Hkv, D].
inline int64_t kv_cache_layer_offset(int layer, int64_t max_positions, int64_t kv_heads,
                                     int64_t head_dim) {
  return int64_t(layer) * max_positions * kv_heads * head_dim;
}

struct RopeCacheShape {
  int64_t tokens = 1;         // T
  int64_t heads = 0;          // H
  int64_t kv_heads = 0;       // Hkv
  int64_t head_dim = 0;       // D, even
  int64_t q_stride = 0;       // elements between q rows; 0 means H * D
  int64_t k_stride = 0;       // elements between k rows; 0 means Hkv * D
  int64_t v_stride = 0;       // elements between v rows; 0 means Hkv * D
  int64_t max_positions = 0;  // P_max: rows of one layer's cache
};

struct RopeCacheConfig {
  int block_threads = 128;  // threads per block, one block per token: 64, 128, 256
  int vector_width = 2;     // rotation pairs per access: 1, 2, 4, 8; (D/2) and strides % width == 0
};

struct RopeCacheGeometry {
  unsigned grid_x = 1;  // T
  unsigned grid_y = 1;  // blocks per token: enough for every item of a token at once
  unsigned block_x = 1;
};

std::vector<TuningParameter> rope_cache_parameters();
bool legal(const RopeCacheConfig& cfg, const DeviceInfo& device, const RopeCacheShape& shape);
std::vector<RopeCacheConfig> rope_cache_configs();  // default first
std::vector<RopeCacheConfig> space(const DeviceInfo& device, const RopeCacheShape& shape);
RopeCacheGeometry geometry(const RopeCacheConfig& cfg, const RopeCacheShape& shape);
std::string name_expression(const RopeCacheConfig& cfg);  // "rope_cache_kernel<128, 2>"
std::string to_string(const RopeCacheConfig& cfg);        // "bt128.vw2"

KernelFamily rope_cache_family();

}  // namespace q4jit
