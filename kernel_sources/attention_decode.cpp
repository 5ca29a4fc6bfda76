// The attention_decode family's descriptor: parameters, legality, space, geometry and workspace
// (attention_decode.hpp), and the fused RoPE + cache write variant of a configuration.
#include "kernel_sources/attention_decode.hpp"

namespace q4jit {

namespace {
constexpr int kHeadDims[] = {64, 128};
constexpr int kSplits[] = {64, 128, 256, 512};
constexpr int kThreads[] = {64, 128, 256};
constexpr int kHeadsPerBlock[] = {1, 2, 4, 8};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
}  // namespace

std::vector<TuningParameter> attention_decode_parameters() {
  return {
      {"d", {64, 128}, "head_dim the kernel is built for; equals the model's D"},
      {"sp", {64, 128, 256, 512}, "positions per block (split size)"},
      {"t", {64, 128, 256}, "threads per block"},
      {"hb", {1, 2, 4, 8}, "query heads sharing one KV head per block; divides H / Hkv"},
  };
}

bool legal(const AttentionDecodeConfig& cfg, const DeviceInfo& device,
           const AttentionDecodeShape& shape) {
  if (shape.heads <= 0 || shape.kv_heads <= 0 || shape.length <= 0) return false;
  if (shape.heads % shape.kv_heads != 0 || shape.head_dim != cfg.head_dim) return false;
  if ((shape.heads / shape.kv_heads) % cfg.heads_per_block != 0) return false;
  if (ceil_div(shape.length, cfg.split) > 65535 || shape.length >= (int64_t(1) << 31)) return false;
  return cfg.threads <= device.max_threads_per_block;
}

std::vector<AttentionDecodeConfig> attention_decode_configs() {
  std::vector<AttentionDecodeConfig> configs = {AttentionDecodeConfig{}};
  for (int dim : kHeadDims) {
    for (int split : kSplits) {
      for (int threads : kThreads) {
        for (int heads : kHeadsPerBlock) {
          const AttentionDecodeConfig cfg{dim, split, threads, heads};
          if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
        }
      }
    }
  }
  return configs;
}

std::vector<AttentionDecodeConfig> space(const DeviceInfo& device,
                                         const AttentionDecodeShape& shape) {
  std::vector<AttentionDecodeConfig> legal_configs;
  for (const AttentionDecodeConfig& cfg : attention_decode_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

AttentionDecodeGeometry geometry(const AttentionDecodeConfig& cfg,
                                 const AttentionDecodeShape& shape) {
  return {static_cast<unsigned>(shape.heads / cfg.heads_per_block),
          static_cast<unsigned>(ceil_div(shape.length, cfg.split)),
          static_cast<unsigned>(cfg.threads)};
}

AttentionDecodeWorkspace workspace(const AttentionDecodeConfig& cfg,
                                   const AttentionDecodeShape& shape) {
  AttentionDecodeWorkspace result;
  result.counters_bytes = shape.heads / cfg.heads_per_block * 4;
  // Past the counters of any heads_per_block, so that configs may share one workspace.
  result.partials_offset = ceil_div(shape.heads * 4, 256) * 256;
  const int64_t splits = ceil_div(shape.length, cfg.split);
  const int64_t floats = shape.heads * splits * (shape.head_dim + 2);
  result.bytes = result.partials_offset + (splits > 1 ? floats * 4 : 0);
  return result;
}

std::string name_expression(const AttentionDecodeConfig& cfg) {
  return std::string("attention_decode_kernel<") + std::to_string(cfg.head_dim) + ", " +
         std::to_string(cfg.split) + ", " + std::to_string(cfg.threads) + ", " +
         std::to_string(cfg.heads_per_block) + ">";
}

std::string to_string(const AttentionDecodeConfig& cfg) {
  std::string text = "d";
  text += std::to_string(cfg.head_dim);
  text += ".sp";
  text += std::to_string(cfg.split);
  text += ".t";
  text += std::to_string(cfg.threads);
  text += ".hb";
  text += std::to_string(cfg.heads_per_block);
  return text;
}

KernelVariant rope_variant(const AttentionDecodeConfig& cfg) {
  const std::string arguments = name_expression(cfg).substr(name_expression(cfg).find('<'));
  return {to_string(cfg) + ".rope", "attention_decode_rope_kernel" + arguments};
}

KernelFamily attention_decode_family() {
  KernelFamily family;
  family.name = "attention_decode";
  family.source = "attention_decode.cu";
  family.parameters = attention_decode_parameters();
  for (int dim : kHeadDims) {  // a load compiles the one for its model's D
    AttentionDecodeConfig defaults;
    defaults.head_dim = dim;
    family.default_variants.push_back({to_string(defaults), name_expression(defaults)});
    family.default_variants.push_back(rope_variant(defaults));
  }
  for (const AttentionDecodeConfig& cfg : attention_decode_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
