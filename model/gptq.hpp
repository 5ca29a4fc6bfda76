// One GPTQ 4-bit linear layer (see ../shared/docs/GPTQ_FORMAT.md, summarized here).
//
// Letters: K = in_features, N = out_features, G = number of groups, group_size = K / G.
// | tensor  | dtype | shape    | packing                                                     |
// | qweight | int32 | [K/8, N] | q(k, n) = (qweight[k/8][n] >> 4*(k%8)) & 15                 |
// | qzeros  | int32 | [G, N/8] | z(g, n) = ((qzeros[g][n/8] >> 4*(n%8)) & 15) + 1            |
// | scales  | fp16  | [G, N]   | w(k, n) = scales[g(k)][n] * (q(k, n) - z(g(k), n))          |
// | g_idx   | int32 | [K]      | g(k); optional; equal to k / group_size or all zero: absent |
//
// Invariants after load (checked, else Error naming the tensor):
// (1) K % 8 == 0, N % 8 == 0, G divides K, every g_idx value in [0, G), each group holding
//     exactly group_size rows when act-order.
// (2) act_order == false: qweight is the file's qweight and x_map is empty.
// (3) act_order == true: qweight rows are sorted by group (stable), x_map[s] is the original row
//     of sorted row s, and group g is sorted rows g*group_size .. (g+1)*group_size - 1. Scales
//     and zeros are unchanged by the sort.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

struct GptqLinear {
  std::string name;  // "model.layers.0.self_attn.q_proj"
  int K = 0;
  int N = 0;
  int G = 0;
  int group_size = 0;  // K / G; equals K for a no-group model
  bool act_order = false;
  bool sym = true;  // every stored zero equals 7 (zero point 8)

  std::vector<int32_t> qweight;  // [K/8, N], rows sorted by group when act_order
  std::vector<int32_t> qzeros;   // [G, N/8]
  std::vector<uint16_t> scales;  // [G, N] fp16 bits
  std::vector<int32_t> x_map;    // [K] sorted row -> original row; empty unless act_order

  // Stored 4-bit value at sorted row s (== original row when !act_order).
  int q_sorted(int s, int n) const {
    return (qweight[size_t(s / 8) * N + n] >> (4 * (s % 8))) & 15;
  }
  int zero(int g, int n) const {
    return ((qzeros[size_t(g) * (N / 8) + n / 8] >> (4 * (n % 8))) & 15) + 1;
  }
};

// Loads "<prefix>.qweight" etc. from the set and checks every invariant above against K and N
// (from the config) and the quantization config when given (bits, group_size, desc_act must agree
// with the tensors; bits != 4 is "not supported" naming the tensor).
GptqLinear load_gptq_linear(const TensorSet& tensors, const std::string& prefix, int K, int N,
                            const std::optional<QuantizationConfig>& quantization);

// The reference dequantization: W [N, K] in fp32, original row order (y = x W^T).
std::vector<float> dequantize_gptq(const GptqLinear& linear);

// The act-order permutation: stable counting sort of rows by group. Returns x_map (sorted ->
// original). Exposed for tests and for the GPU loader.
std::vector<int32_t> act_order_permutation(const std::vector<int32_t>& g_idx, int G);

}  // namespace q4jit
