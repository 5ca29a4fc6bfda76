// Host descriptors of the pointwise families (kernels in elementwise.cu): silu_mul, residual_add
// and logits_f32 share one config type and one space (block threads x vector width) but are three
// families, one kernel each. Parameters change speed, never results.
// Not here: launching (the engine and tests call Backend::launch with geometry() and the kernel's
// arguments in the order elementwise.cu declares them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

enum class ElementwiseOp {
  silu_mul,      // out[M, F] = silu(gate) * up
  residual_add,  // x += y over rows * columns elements
  logits_f32,    // fp16 -> fp32 over rows * columns elements
};

struct ElementwiseShape {
  int64_t rows = 1;         // M: tokens
  int64_t columns = 0;      // F for silu_mul, else the row length (C or V)
  int64_t gate_stride = 0;  // silu_mul: elements between gate rows; 0 means columns
  int64_t up_stride = 0;    // silu_mul: elements between up rows; 0 means columns
};

struct ElementwiseConfig {
  int block_threads = 256;  // threads per block: 64, 128, 256, 512
  int vector_width = 8;  // fp16 elements per access: 1, 2, 4, 8; columns and strides % width == 0
};

struct ElementwiseGeometry {
  unsigned grid_x = 1;
  unsigned grid_y = 1;
  unsigned block_x = 1;
};

std::vector<TuningParameter> elementwise_parameters();
// Whether cfg may run op on this shape and device (mirrors the static_asserts in elementwise.cu).
bool legal(ElementwiseOp op, const ElementwiseConfig& cfg, const DeviceInfo& device,
           const ElementwiseShape& shape);
// Every combination of the parameters' values, default first.
std::vector<ElementwiseConfig> elementwise_configs();
std::vector<ElementwiseConfig> space(ElementwiseOp op, const DeviceInfo& device,
                                     const ElementwiseShape& shape);
ElementwiseGeometry geometry(ElementwiseOp op, const ElementwiseConfig& cfg,
                             const ElementwiseShape& shape);
// "silu_mul_kernel<256, 8>"
std::string name_expression(ElementwiseOp op, const ElementwiseConfig& cfg);
// "bt256.vw8"
std::string to_string(const ElementwiseConfig& cfg);

KernelFamily silu_mul_family();
KernelFamily residual_add_family();
KernelFamily logits_f32_family();

}  // namespace q4jit
