// The greedy_token family's descriptor (greedy_token.hpp).
#include "kernel_sources/greedy_token.hpp"

#include <cstdint>

namespace q4jit {

namespace {
constexpr int kBlockThreads[] = {1024, 512, 256};  // the default first
}  // namespace

std::vector<TuningParameter> greedy_token_parameters() {
  return {{"bt", {256, 512, 1024}, "threads of the one block"}};
}

bool legal(const GreedyTokenConfig& cfg, const DeviceInfo& device, int64_t vocab) {
  return vocab > 0 && vocab < (int64_t(1) << 31) &&
         cfg.block_threads <= device.max_threads_per_block;
}

std::vector<GreedyTokenConfig> greedy_token_configs() {
  std::vector<GreedyTokenConfig> configs;
  for (int threads : kBlockThreads) configs.push_back({threads});
  return configs;
}

std::vector<GreedyTokenConfig> space(const DeviceInfo& device, int64_t vocab) {
  std::vector<GreedyTokenConfig> legal_configs;
  for (const GreedyTokenConfig& cfg : greedy_token_configs())
    if (legal(cfg, device, vocab)) legal_configs.push_back(cfg);
  return legal_configs;
}

std::string name_expression(const GreedyTokenConfig& cfg) {
  return "greedy_token_kernel<" + std::to_string(cfg.block_threads) + ">";
}

std::string to_string(const GreedyTokenConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads);
}

KernelFamily greedy_token_family() {
  KernelFamily family;
  family.name = "greedy_token";
  family.source = "greedy_token.cu";
  family.parameters = greedy_token_parameters();
  const GreedyTokenConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  for (const GreedyTokenConfig& cfg : greedy_token_configs())
    family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
  return family;
}

}  // namespace q4jit
