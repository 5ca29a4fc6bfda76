// The lm_head family's descriptor: parameters, legality, space and geometry (lm_head.hpp).
#include "kernel_sources/lm_head.hpp"

namespace q4jit {

namespace {
constexpr int kWarps[] = {2, 4, 8, 16};
constexpr int kRows[] = {1, 2, 4, 8};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
}  // namespace

std::vector<TuningParameter> lm_head_parameters() {
  return {
      {"w", {2, 4, 8, 16}, "warps per block, one vocabulary row each"},
      {"r", {1, 2, 4, 8}, "activation rows per block; r >= M avoids re-reading the weights"},
      {"f32", {0, 1}, "fp32 (1) or fp16 (0) logits; the caller's choice, not tuned"},
  };
}

bool legal(const LmHeadConfig& cfg, const DeviceInfo& device, const LmHeadShape& shape) {
  if (shape.rows <= 0 || shape.hidden <= 0 || shape.vocab <= 0) return false;
  if (shape.hidden % 8 != 0) return false;
  const int64_t limit = int64_t(1) << 31;
  if (shape.hidden >= limit || shape.vocab >= limit || ceil_div(shape.rows, cfg.rows) > 65535)
    return false;
  if (cfg.rows > 1 && cfg.rows / 2 >= shape.rows) return false;  // mostly padding rows
  return cfg.warps * 32 <= device.max_threads_per_block;
}

std::vector<LmHeadConfig> lm_head_configs() {
  std::vector<LmHeadConfig> configs = {LmHeadConfig{}};
  for (bool float_out : {true, false}) {
    for (int warps : kWarps) {
      for (int rows : kRows) {
        const LmHeadConfig cfg{warps, rows, float_out};
        if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
      }
    }
  }
  return configs;
}

std::vector<LmHeadConfig> space(const DeviceInfo& device, const LmHeadShape& shape,
                                bool float_out) {
  std::vector<LmHeadConfig> legal_configs;
  for (const LmHeadConfig& cfg : lm_head_configs()) {
    if (cfg.float_out == float_out && legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

LmHeadGeometry geometry(const LmHeadConfig& cfg, const LmHeadShape& shape) {
  return {static_cast<unsigned>(ceil_div(shape.vocab, cfg.warps)),
          static_cast<unsigned>(ceil_div(shape.rows, cfg.rows)),
          static_cast<unsigned>(cfg.warps * 32)};
}

std::string name_expression(const LmHeadConfig& cfg) {
  return std::string("lm_head_kernel<") + std::to_string(cfg.warps) + ", " +
         std::to_string(cfg.rows) + ", " + (cfg.float_out ? "true" : "false") + ">";
}

std::string to_string(const LmHeadConfig& cfg) {
  std::string text = "w";
  text += std::to_string(cfg.warps);
  text += ".r";
  text += std::to_string(cfg.rows);
  text += cfg.float_out ? ".f32" : ".f16";
  return text;
}

KernelFamily lm_head_family() {
  KernelFamily family;
  family.name = "lm_head";
  family.source = "lm_head.cu";
  family.parameters = lm_head_parameters();
  const LmHeadConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  for (const LmHeadConfig& cfg : lm_head_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
