// The embedding family's descriptor: parameters, legality, space and geometry (embedding.hpp).
#include "kernel_sources/embedding.hpp"

namespace q4jit {

namespace {
constexpr int kBlockThreads[] = {64, 128, 256, 512};
constexpr int kVectorWidths[] = {1, 2, 4, 8};
}  // namespace

std::vector<TuningParameter> embedding_parameters() {
  return {
      {"bt", {64, 128, 256, 512}, "threads per block, one block per token"},
      {"vw", {1, 2, 4, 8}, "fp16 elements per access; hidden % vw == 0"},
  };
}

bool legal(const EmbeddingConfig& cfg, const DeviceInfo& device, const EmbeddingShape& shape) {
  if (shape.tokens <= 0 || shape.vocab <= 0 || shape.hidden <= 0) return false;
  if (shape.hidden % cfg.vector_width != 0) return false;
  if (shape.tokens >= (int64_t(1) << 31) || shape.hidden >= (int64_t(1) << 31)) return false;
  return cfg.block_threads <= device.max_threads_per_block;
}

std::vector<EmbeddingConfig> embedding_configs() {
  std::vector<EmbeddingConfig> configs = {EmbeddingConfig{}};
  for (int threads : kBlockThreads) {
    for (int width : kVectorWidths) {
      const EmbeddingConfig cfg{threads, width};
      if (to_string(cfg) != to_string(configs.front())) configs.push_back(cfg);
    }
  }
  return configs;
}

std::vector<EmbeddingConfig> space(const DeviceInfo& device, const EmbeddingShape& shape) {
  std::vector<EmbeddingConfig> legal_configs;
  for (const EmbeddingConfig& cfg : embedding_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

EmbeddingGeometry geometry(const EmbeddingConfig& cfg, const EmbeddingShape& shape) {
  return {static_cast<unsigned>(shape.tokens), static_cast<unsigned>(cfg.block_threads)};
}

std::string name_expression(const EmbeddingConfig& cfg) {
  return "embedding_kernel<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.vector_width) + ">";
}

std::string to_string(const EmbeddingConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads) + ".vw" + std::to_string(cfg.vector_width);
}

KernelFamily embedding_family() {
  KernelFamily family;
  family.name = "embedding";
  family.source = "embedding.cu";
  family.parameters = embedding_parameters();
  const EmbeddingConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  for (const EmbeddingConfig& cfg : embedding_configs()) {
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  }
  return family;
}

}  // namespace q4jit
