// The pointwise families' descriptors: parameters, legality, space and geometry (elementwise.hpp).
#include "kernel_sources/elementwise.hpp"

namespace q4jit {

namespace {

constexpr int kBlockThreads[] = {64, 128, 256, 512};
constexpr int kVectorWidths[] = {1, 2, 4, 8};

const char* kernel_name(ElementwiseOp op) {
  switch (op) {
    case ElementwiseOp::silu_mul:
      return "silu_mul_kernel";
    case ElementwiseOp::residual_add:
      return "residual_add_kernel";
    case ElementwiseOp::logits_f32:
      return "logits_f32_kernel";
  }
  return "";
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

KernelFamily make_family(ElementwiseOp op, const std::string& name) {
  KernelFamily family;
  family.name = name;
  family.source = "elementwise.cu";
  family.parameters = elementwise_parameters();
  const ElementwiseConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(op, defaults)}};
  for (const ElementwiseConfig& cfg : elementwise_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(op, cfg)});
  }
  return family;
}

}  // namespace

std::vector<TuningParameter> elementwise_parameters() {
  return {
      {"bt", {64, 128, 256, 512}, "threads per block"},
      {"vw", {1, 2, 4, 8}, "fp16 elements per access; columns and row strides % vw == 0"},
  };
}

bool legal(ElementwiseOp op, const ElementwiseConfig& cfg, const DeviceInfo& device,
           const ElementwiseShape& shape) {
  if (shape.rows <= 0 || shape.columns <= 0) return false;
  if (cfg.block_threads > device.max_threads_per_block) return false;
  const int64_t width = cfg.vector_width;
  if (op == ElementwiseOp::silu_mul) {
    const int64_t gate_stride = shape.gate_stride == 0 ? shape.columns : shape.gate_stride;
    const int64_t up_stride = shape.up_stride == 0 ? shape.columns : shape.up_stride;
    if (gate_stride < shape.columns || up_stride < shape.columns) return false;
    if (shape.columns % width || gate_stride % width || up_stride % width) return false;
    // Grid y is the row; int strides in the kernel.
    return shape.rows <= 65535 && gate_stride * shape.rows < (int64_t(1) << 31) &&
           up_stride * shape.rows < (int64_t(1) << 31);
  }
  const int64_t count = shape.rows * shape.columns;
  return count % width == 0 && ceil_div(count, width * cfg.block_threads) < (int64_t(1) << 31);
}

std::vector<ElementwiseConfig> elementwise_configs() {
  std::vector<ElementwiseConfig> configs = {ElementwiseConfig{}};
  for (int threads : kBlockThreads) {
    for (int width : kVectorWidths) {
      const ElementwiseConfig cfg{threads, width};
      if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
    }
  }
  return configs;
}

std::vector<ElementwiseConfig> space(ElementwiseOp op, const DeviceInfo& device,
                                     const ElementwiseShape& shape) {
  std::vector<ElementwiseConfig> legal_configs;
  for (const ElementwiseConfig& cfg : elementwise_configs()) {
    if (legal(op, cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

ElementwiseGeometry geometry(ElementwiseOp op, const ElementwiseConfig& cfg,
                             const ElementwiseShape& shape) {
  const int64_t per_block = int64_t(cfg.block_threads) * cfg.vector_width;
  ElementwiseGeometry result;
  result.block_x = static_cast<unsigned>(cfg.block_threads);
  if (op == ElementwiseOp::silu_mul) {
    result.grid_x = static_cast<unsigned>(ceil_div(shape.columns, per_block));
    result.grid_y = static_cast<unsigned>(shape.rows);
  } else {
    result.grid_x = static_cast<unsigned>(ceil_div(shape.rows * shape.columns, per_block));
  }
  return result;
}

std::string name_expression(ElementwiseOp op, const ElementwiseConfig& cfg) {
  return std::string(kernel_name(op)) + "<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.vector_width) + ">";
}

std::string to_string(const ElementwiseConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads) + ".vw" + std::to_string(cfg.vector_width);
}

KernelFamily silu_mul_family() {
  return make_family(ElementwiseOp::silu_mul, "silu_mul");
}
KernelFamily residual_add_family() {
  return make_family(ElementwiseOp::residual_add, "residual_add");
}
KernelFamily logits_f32_family() {
  return make_family(ElementwiseOp::logits_f32, "logits_f32");
}

}  // namespace q4jit
