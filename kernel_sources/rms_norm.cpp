// The rms_norm family's descriptor: parameters, legality, space and geometry (see rms_norm.hpp).
#include "kernel_sources/rms_norm.hpp"

namespace q4jit {

namespace {
constexpr int kBlockThreads[] = {64, 128, 256, 512, 1024};
constexpr int kVectorWidths[] = {1, 2, 4, 8};
}  // namespace

std::vector<TuningParameter> rms_norm_parameters() {
  return {
      {"bt", {64, 128, 256, 512, 1024}, "threads per block; <= device max threads per block"},
      {"vw", {1, 2, 4, 8}, "fp16 elements per access; hidden % vw == 0"},
      {"sr", {0, 1}, "stage the row in shared memory; hidden * 2 <= smem per block (opt-in)"},
  };
}

bool legal(const RmsNormConfig& cfg, const DeviceInfo& device, const RmsNormShape& shape) {
  if (shape.hidden <= 0 || shape.rows <= 0) return false;
  if (shape.hidden % cfg.vector_width != 0) return false;
  if (cfg.block_threads > device.max_threads_per_block) return false;
  if (cfg.stage_row && shape.hidden * 2 > device.smem_per_block_optin) return false;
  return true;
}

std::vector<RmsNormConfig> rms_norm_configs() {
  std::vector<RmsNormConfig> configs = {RmsNormConfig{}};
  for (int threads : kBlockThreads) {
    for (int width : kVectorWidths) {
      for (bool stage : {false, true}) {
        RmsNormConfig cfg{threads, width, stage};
        if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
      }
    }
  }
  return configs;
}

std::vector<RmsNormConfig> space(const DeviceInfo& device, const RmsNormShape& shape) {
  std::vector<RmsNormConfig> legal_configs;
  for (const RmsNormConfig& cfg : rms_norm_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

RmsNormGeometry geometry(const RmsNormConfig& cfg, const RmsNormShape& shape) {
  RmsNormGeometry result;
  result.grid_x = static_cast<unsigned>(shape.rows);
  result.block_x = static_cast<unsigned>(cfg.block_threads);
  result.dynamic_smem_bytes = cfg.stage_row ? shape.hidden * 2 : 0;
  return result;
}

std::string name_expression(const RmsNormConfig& cfg) {
  return "rms_norm_kernel<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.vector_width) + ", " + (cfg.stage_row ? "true" : "false") + ">";
}

std::string add_name_expression(const RmsNormConfig& cfg) {
  return "add_rms_norm_kernel<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.vector_width) + ">";
}

std::string to_string(const RmsNormConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads) + ".vw" + std::to_string(cfg.vector_width) +
         ".sr" + (cfg.stage_row ? "1" : "0");
}

KernelFamily rms_norm_family() {
  KernelFamily family;
  family.name = "rms_norm";
  family.source = "rms_norm.cu";
  family.parameters = rms_norm_parameters();
  const RmsNormConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  // The fused add + norm at every block size the engine picks (one 8-wide vector per thread).
  for (int threads : {128, 256, 512, 1024}) {
    RmsNormConfig add = defaults;
    add.block_threads = threads;
    add.stage_row = true;
    family.default_variants.push_back({to_string(add) + ".add", add_name_expression(add)});
  }
  for (const RmsNormConfig& cfg : rms_norm_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
