// The attention_prefill family's descriptor: parameters, legality, space and geometry
// (attention_prefill.hpp).
#include "kernel_sources/attention_prefill.hpp"

namespace q4jit {

namespace {
constexpr int kHeadDims[] = {64, 128};
constexpr int kBlockQ[] = {16, 32, 64};
constexpr int kBlockK[] = {32, 64};
constexpr int kWarps[] = {2, 4, 8};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t or_default(int64_t stride, int64_t fallback) {
  return stride == 0 ? fallback : stride;
}

// The template's own rule (static_assert in attention_prefill.cu).
bool buildable(const AttentionPrefillConfig& cfg) {
  return cfg.block_q % cfg.warps == 0 && cfg.block_q / cfg.warps <= 8;
}
}  // namespace

std::vector<TuningParameter> attention_prefill_parameters() {
  return {
      {"d", {64, 128}, "head_dim the kernel is built for; equals the model's D"},
      {"bq", {16, 32, 64}, "queries per block"},
      {"bk", {32, 64}, "keys per shared-memory tile"},
      {"w", {2, 4, 8}, "warps per block; 1 <= bq / w <= 8"},
  };
}

bool legal(const AttentionPrefillConfig& cfg, const DeviceInfo& device,
           const AttentionPrefillShape& shape) {
  if (!buildable(cfg)) return false;
  if (shape.tokens <= 0 || shape.first_position < 0 || shape.heads <= 0 || shape.kv_heads <= 0)
    return false;
  if (shape.heads % shape.kv_heads != 0 || shape.head_dim != cfg.head_dim) return false;
  const int64_t q_stride = or_default(shape.q_stride, shape.heads * shape.head_dim);
  const int64_t out_stride = or_default(shape.out_stride, shape.heads * shape.head_dim);
  if (q_stride < shape.heads * shape.head_dim || out_stride < shape.heads * shape.head_dim)
    return false;
  if (q_stride % 8 != 0 || out_stride % 2 != 0) return false;  // 16-byte q loads, half2 stores
  const int64_t limit = int64_t(1) << 31;
  if (shape.first_position + shape.tokens >= limit || q_stride >= limit || out_stride >= limit)
    return false;
  if (shape.heads > 65535) return false;
  return cfg.warps * 32 <= device.max_threads_per_block &&
         geometry(cfg, shape).dynamic_smem_bytes <= device.smem_per_block_optin;
}

std::vector<AttentionPrefillConfig> attention_prefill_configs() {
  std::vector<AttentionPrefillConfig> configs = {AttentionPrefillConfig{}};
  for (int dim : kHeadDims) {
    for (int block_q : kBlockQ) {
      for (int block_k : kBlockK) {
        for (int warps : kWarps) {
          const AttentionPrefillConfig cfg{dim, block_q, block_k, warps};
          if (buildable(cfg) && to_string(cfg) != to_string(configs.front()))
            configs.push_back(cfg);
        }
      }
    }
  }
  return configs;
}

std::vector<AttentionPrefillConfig> space(const DeviceInfo& device,
                                          const AttentionPrefillShape& shape) {
  std::vector<AttentionPrefillConfig> legal_configs;
  for (const AttentionPrefillConfig& cfg : attention_prefill_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

AttentionPrefillGeometry geometry(const AttentionPrefillConfig& cfg,
                                  const AttentionPrefillShape& shape) {
  AttentionPrefillGeometry result;
  result.grid_x = static_cast<unsigned>(ceil_div(shape.tokens, cfg.block_q));
  result.grid_y = static_cast<unsigned>(shape.heads);
  result.block_x = static_cast<unsigned>(cfg.warps * 32);
  const int64_t D = cfg.head_dim;
  result.dynamic_smem_bytes = 2 * (cfg.block_q * D + cfg.block_k * (D + 2) + cfg.block_k * D);
  return result;
}

std::string name_expression(const AttentionPrefillConfig& cfg) {
  return std::string("attention_prefill_kernel<") + std::to_string(cfg.head_dim) + ", " +
         std::to_string(cfg.block_q) + ", " + std::to_string(cfg.block_k) + ", " +
         std::to_string(cfg.warps) + ">";
}

std::string to_string(const AttentionPrefillConfig& cfg) {
  std::string text = "d";
  text += std::to_string(cfg.head_dim);
  text += ".bq";
  text += std::to_string(cfg.block_q);
  text += ".bk";
  text += std::to_string(cfg.block_k);
  text += ".w";
  text += std::to_string(cfg.warps);
  return text;
}

KernelFamily attention_prefill_family() {
  KernelFamily family;
  family.name = "attention_prefill";
  family.source = "attention_prefill.cu";
  family.parameters = attention_prefill_parameters();
  for (int dim : kHeadDims) {  // a load compiles the one for its model's D
    AttentionPrefillConfig defaults;
    defaults.head_dim = dim;
    family.default_variants.push_back({to_string(defaults), name_expression(defaults)});
  }
  for (const AttentionPrefillConfig& cfg : attention_prefill_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
