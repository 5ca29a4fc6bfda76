// Host descriptor of the greedy_token family (kernel in greedy_token.cu): the argmax of a row of
// fp32 logits written as the next decode step's token, with its position and length advanced.
// One block; the parameter changes nothing but speed.
#pragma once

#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct GreedyTokenConfig {
  int block_threads = 1024;  // 256, 512, 1024
};

std::vector<TuningParameter> greedy_token_parameters();
// V in [1, 2^31); block_threads within the device's limit.
bool legal(const GreedyTokenConfig& cfg, const DeviceInfo& device, int64_t vocab);
std::vector<GreedyTokenConfig> greedy_token_configs();  // default first
std::vector<GreedyTokenConfig> space(const DeviceInfo& device, int64_t vocab);
std::string name_expression(const GreedyTokenConfig& cfg);  // "greedy_token_kernel<1024>"
std::string to_string(const GreedyTokenConfig& cfg);        // "bt1024"

KernelFamily greedy_token_family();

}  // namespace q4jit
