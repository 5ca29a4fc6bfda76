// Host descriptor of the attention_prefill_mma family (kernel in attention_prefill_mma.cu): the
// causal prefill attention of attention_prefill.hpp (same shape, arguments and results) on tensor
// cores, mma.sync m16n8k16 with fp32 accumulation, sm_80+ NVIDIA only. Its tuning parameters,
// legality, space, geometry and name expressions. Not here: compiling and launching
// (model/gpu/gpu_ops.cpp picks this family where legal, else attention_prefill).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/attention_prefill.hpp"
#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

// Parameters change only the fp32 summation order (P is rounded to fp16 in every config):
// relative error <= 2e-3 against the fp32 reference.
struct AttentionPrefillMmaConfig {
  int head_dim = 128;  // d: 64, 128; the model's D
  int block_q = 64;    // bq: 64, 128 query rows per block, 16 per warp (4 or 8 warps)
  int block_k = 64;    // bk: 32, 64 keys per shared-memory tile
  int stages = 2;      // st: 1, 2 cp.async stages of K and V (2: the next tile loads meanwhile)
};

std::vector<TuningParameter> attention_prefill_mma_parameters();
// Whether cfg may run this shape on this device: the template's rules, sm_80+, the shape's
// rules as attention_prefill's (q_stride % 8 for 16-byte copies, even out_stride) and shared
// memory within the device's opt-in limit.
bool legal(const AttentionPrefillMmaConfig& cfg, const DeviceInfo& device,
           const AttentionPrefillShape& shape);
std::vector<AttentionPrefillMmaConfig> attention_prefill_mma_configs();  // default first
// The legal configurations, default first. Named for the family: space(device, shape) of the
// same shape type is attention_prefill's.
std::vector<AttentionPrefillMmaConfig> attention_prefill_mma_space(
    const DeviceInfo& device, const AttentionPrefillShape& shape);
// Grid (ceil(T / bq), H), 2 bq threads, shared memory 2 (bq + 2 st bk) (D + 8) bytes.
AttentionPrefillGeometry geometry(const AttentionPrefillMmaConfig& cfg,
                                  const AttentionPrefillShape& shape);
// "attention_prefill_mma_kernel<128, 64, 64, 2>"
std::string name_expression(const AttentionPrefillMmaConfig& cfg);
// "d128.bq64.bk64.st2"
std::string to_string(const AttentionPrefillMmaConfig& cfg);

KernelFamily attention_prefill_mma_family();

}  // namespace q4jit
