// The attention_prefill_mma family's descriptor: parameters, legality, space and geometry
// (attention_prefill_mma.hpp).
#include "kernel_sources/attention_prefill_mma.hpp"

namespace q4jit {

namespace {
constexpr int kHeadDims[] = {64, 128};
constexpr int kBlockQ[] = {64, 128};
constexpr int kBlockK[] = {32, 64};
constexpr int kStages[] = {1, 2};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t or_default(int64_t stride, int64_t fallback) {
  return stride == 0 ? fallback : stride;
}

// The template's static_asserts (attention_prefill_mma.cu).
bool instantiable(const AttentionPrefillMmaConfig& cfg) {
  return (cfg.head_dim == 64 || cfg.head_dim == 128) && (cfg.block_q == 64 || cfg.block_q == 128) &&
         (cfg.block_k == 32 || cfg.block_k == 64) && (cfg.stages == 1 || cfg.stages == 2);
}

bool shape_fits(const AttentionPrefillShape& shape) {
  if (shape.tokens <= 0 || shape.first_position < 0 || shape.heads <= 0 || shape.kv_heads <= 0)
    return false;
  if (shape.heads % shape.kv_heads != 0 || shape.heads > 65535) return false;
  const int64_t width = shape.heads * shape.head_dim;
  const int64_t q_stride = or_default(shape.q_stride, width);
  const int64_t out_stride = or_default(shape.out_stride, width);
  if (q_stride < width || out_stride < width) return false;
  if (q_stride % 8 != 0 || out_stride % 2 != 0) return false;  // 16-byte q copies, half2 stores
  const int64_t limit = int64_t(1) << 31;
  return shape.first_position + shape.tokens < limit && q_stride < limit && out_stride < limit;
}
}  // namespace

std::vector<TuningParameter> attention_prefill_mma_parameters() {
  return {
      {"d", {64, 128}, "head_dim the kernel is built for; equals the model's D"},
      {"bq", {64, 128}, "query rows per block, 16 per warp"},
      {"bk", {32, 64}, "keys per shared-memory tile"},
      {"st", {1, 2}, "cp.async stages of K and V tiles"},
  };
}

bool legal(const AttentionPrefillMmaConfig& cfg, const DeviceInfo& device,
           const AttentionPrefillShape& shape) {
  if (!instantiable(cfg) || device.sm() < 80) return false;  // mma.sync m16n8k16, cp.async
  if (shape.head_dim != cfg.head_dim || !shape_fits(shape)) return false;
  const AttentionPrefillGeometry g = geometry(cfg, shape);
  return int(g.block_x) <= device.max_threads_per_block &&
         g.dynamic_smem_bytes <= device.smem_per_block_optin;
}

std::vector<AttentionPrefillMmaConfig> attention_prefill_mma_configs() {
  std::vector<AttentionPrefillMmaConfig> configs = {AttentionPrefillMmaConfig{}};
  for (int dim : kHeadDims) {
    for (int block_q : kBlockQ) {
      for (int block_k : kBlockK) {
        for (int stages : kStages) {
          const AttentionPrefillMmaConfig cfg{dim, block_q, block_k, stages};
          if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
        }
      }
    }
  }
  return configs;
}

std::vector<AttentionPrefillMmaConfig> attention_prefill_mma_space(
    const DeviceInfo& device, const AttentionPrefillShape& shape) {
  std::vector<AttentionPrefillMmaConfig> legal_configs;
  for (const AttentionPrefillMmaConfig& cfg : attention_prefill_mma_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

AttentionPrefillGeometry geometry(const AttentionPrefillMmaConfig& cfg,
                                  const AttentionPrefillShape& shape) {
  AttentionPrefillGeometry result;
  result.grid_x = static_cast<unsigned>(ceil_div(shape.tokens, cfg.block_q));
  result.grid_y = static_cast<unsigned>(shape.heads);
  result.block_x = static_cast<unsigned>(cfg.block_q * 2);
  const int64_t pitch = cfg.head_dim + 8;  // Layout in attention_prefill_mma.cu
  result.dynamic_smem_bytes = 2 * (cfg.block_q + 2 * cfg.stages * cfg.block_k) * pitch;
  return result;
}

std::string name_expression(const AttentionPrefillMmaConfig& cfg) {
  return "attention_prefill_mma_kernel<" + std::to_string(cfg.head_dim) + ", " +
         std::to_string(cfg.block_q) + ", " + std::to_string(cfg.block_k) + ", " +
         std::to_string(cfg.stages) + ">";
}

std::string to_string(const AttentionPrefillMmaConfig& cfg) {
  return "d" + std::to_string(cfg.head_dim) + ".bq" + std::to_string(cfg.block_q) + ".bk" +
         std::to_string(cfg.block_k) + ".st" + std::to_string(cfg.stages);
}

KernelFamily attention_prefill_mma_family() {
  KernelFamily family;
  family.name = "attention_prefill_mma";
  family.source = "attention_prefill_mma.cu";
  family.min_sm = 80;  // mma.sync m16n8k16, ldmatrix and cp.async
  family.amd = false;  // inline PTX; AMD runs attention_prefill
  family.parameters = attention_prefill_mma_parameters();
  for (int dim : kHeadDims) {  // a load compiles the one for its model's D
    AttentionPrefillMmaConfig defaults;
    defaults.head_dim = dim;
    family.default_variants.push_back({to_string(defaults), name_expression(defaults)});
  }
  for (const AttentionPrefillMmaConfig& cfg : attention_prefill_mma_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
