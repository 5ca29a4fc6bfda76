// The dequantize_q4 family's descriptor (dequantize_q4.hpp).
#include "kernel_sources/dequantize_q4.hpp"

namespace q4jit {

std::vector<TuningParameter> dequantize_q4_parameters() {
  return {
      {"bt", {128, 256}, "threads per block"},
      {"tk", {64, 128}, "rows of K per block"},
  };
}

bool legal(const DequantizeConfig& cfg, const DeviceInfo& device, const DequantizeShape& shape) {
  if (cfg.block_threads != 128 && cfg.block_threads != 256) return false;
  if (cfg.tile_k != 64 && cfg.tile_k != 128) return false;
  if (shape.K <= 0 || shape.N <= 0 || shape.K % 8 != 0 || shape.N % 8 != 0) return false;
  if (shape.group_size <= 0 || shape.K % shape.group_size != 0) return false;
  if (shape.K * shape.N >= (int64_t(1) << 40)) return false;
  return cfg.block_threads <= device.max_threads_per_block || device.max_threads_per_block == 0;
}

std::vector<DequantizeConfig> dequantize_q4_configs() {
  return {{256, 64}, {128, 64}, {256, 128}, {128, 128}};
}

DequantizeGeometry geometry(const DequantizeConfig& cfg, const DequantizeShape& shape) {
  DequantizeGeometry result;
  result.grid_x = static_cast<unsigned>((shape.N + 63) / 64);
  result.grid_y = static_cast<unsigned>((shape.K + cfg.tile_k - 1) / cfg.tile_k);
  result.block_x = static_cast<unsigned>(cfg.block_threads);
  return result;
}

std::string name_expression(const DequantizeConfig& cfg) {
  return "dequantize_q4_kernel<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.tile_k) + ">";
}

std::string to_string(const DequantizeConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads) + ".tk" + std::to_string(cfg.tile_k);
}

std::vector<int32_t> sorted_row_of(const std::vector<int32_t>& x_map) {
  std::vector<int32_t> inverse(x_map.size());
  for (size_t s = 0; s < x_map.size(); ++s)
    inverse[static_cast<size_t>(x_map[s])] = static_cast<int32_t>(s);
  return inverse;
}

KernelFamily dequantize_q4_family() {
  KernelFamily family;
  family.name = "dequantize_q4";
  family.source = "dequantize_q4.cu";
  family.parameters = dequantize_q4_parameters();
  const DequantizeConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  for (const DequantizeConfig& cfg : dequantize_q4_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
