// Host descriptor of the attention_decode family (kernels in attention_decode.cu): flash-decoding
// over the KV cache for one query token, GQA in place, alone or fused with the new token's RoPE
// and cache write (rope_variant). Its workspace (counters that every launch leaves zero, then fp32
// partials) is sized by workspace(). Parameters change only the fp32 summation order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct AttentionDecodeShape {
  int64_t heads = 0;     // H
  int64_t kv_heads = 0;  // Hkv, divides H
  int64_t head_dim = 0;  // D
  int64_t length = 0;    // positions attended: the query sits at length - 1
};

struct AttentionDecodeConfig {
  int head_dim = 128;       // D the kernel is built for: 64, 128
  int split = 256;          // positions per block (flash-decoding split): 64, 128, 256, 512
  int threads = 128;        // threads per block: 64, 128, 256
  int heads_per_block = 1;  // query heads of one KV group per block: 1, 2, 4, 8; divides H / Hkv
};

struct AttentionDecodeGeometry {
  unsigned grid_x = 1;  // H / heads_per_block
  unsigned grid_y = 1;  // splits
  unsigned block_x = 1;
};

// Byte offsets in the workspace; [0, counters_bytes) must be zero before the first launch.
struct AttentionDecodeWorkspace {
  int64_t counters_bytes = 0;   // int32 [H / heads_per_block], at offset 0
  int64_t partials_offset = 0;  // fp32 partials (see attention_decode.cu)
  int64_t bytes = 0;            // total
};

std::vector<TuningParameter> attention_decode_parameters();
bool legal(const AttentionDecodeConfig& cfg, const DeviceInfo& device,
           const AttentionDecodeShape& shape);
std::vector<AttentionDecodeConfig> attention_decode_configs();  // default first
std::vector<AttentionDecodeConfig> space(const DeviceInfo& device,
                                         const AttentionDecodeShape& shape);
AttentionDecodeGeometry geometry(const AttentionDecodeConfig& cfg,
                                 const AttentionDecodeShape& shape);
// Sized for shape.length; a workspace sized for a longer length serves every shorter one.
AttentionDecodeWorkspace workspace(const AttentionDecodeConfig& cfg,
                                   const AttentionDecodeShape& shape);
// "attention_decode_kernel<128, 256, 128, 1>"
std::string name_expression(const AttentionDecodeConfig& cfg);
// "d128.sp256.t128.hb1"
std::string to_string(const AttentionDecodeConfig& cfg);

// The fused launch of the same configuration (attention_decode_rope_kernel): RoPE of the new
// token and its key and value into the cache in the decode launch itself. Same legality, geometry
// and workspace; its own kernel, config "d128.sp256.t128.hb1.rope",
// "attention_decode_rope_kernel<128, 256, 128, 1>".
KernelVariant rope_variant(const AttentionDecodeConfig& cfg);

KernelFamily attention_decode_family();

}  // namespace q4jit
