// A Llama model as loaded from a folder: config, and every weight on the host, GPTQ projections
// kept packed (gptq.hpp), fp16 projections kept as fp16 bits. Device code copies from here; the
// CPU reference (model/ref/) dequantizes from here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/gptq.hpp"

namespace q4jit {

// One projection, y = x W^T with W [N, K]: either GPTQ-packed or dense fp16.
struct Linear {
  std::string name;
  int K = 0;
  int N = 0;
  std::optional<GptqLinear> gptq;  // set for quantized checkpoints
  std::vector<uint16_t> dense;     // [N, K] fp16 bits, set for fp16 checkpoints
};

struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]
  std::vector<float> post_norm;   // [hidden]
  Linear q, k, v, o;              // q: hidden -> heads*head_dim; k, v: hidden -> kv_heads*head_dim
  Linear gate, up, down;          // gate, up: hidden -> intermediate; down: intermediate -> hidden
};

struct ModelWeights {
  std::vector<uint16_t> embed;  // [vocab, hidden] fp16 bits
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<uint16_t> lm_head;  // [vocab, hidden] fp16 bits; empty when tied to embed
};

// What `q4jit info` reports about the quantization, inferred from the tensors.
struct QuantizationSummary {
  bool quantized = false;
  int bits = 16;
  int group_size = 0;  // 0 when not quantized; K when no-group (per-projection K varies: -1)
  bool act_order = false;
  bool sym = true;
};

struct Model {
  std::filesystem::path dir;
  LlamaConfig config;
  ModelWeights weights;
  QuantizationSummary quantization;
  int64_t parameter_count = 0;  // logical parameters (a 4-bit weight counts as one)
  int64_t weight_bytes = 0;     // bytes of all tensors as stored on disk
};

// Loads config.json and every tensor; Errors name the file and the tensor.
Model load_model(const std::filesystem::path& dir);

}  // namespace q4jit
