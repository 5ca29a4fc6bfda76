// config.json of a Hugging Face Llama checkpoint, with the defaults of GPTQ_FORMAT.md, plus the
// quantization settings (config.json "quantization_config" or quantize_config.json).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace q4jit {

struct QuantizationConfig {
  int bits = 4;
  int group_size = -1;    // -1: one group over all of K (no-group model)
  bool desc_act = false;  // act-order
  bool sym = true;
  std::string source;  // the file it was read from, for error messages
};

struct RopeScaling {
  enum class Kind { none, linear };
  Kind kind = Kind::none;
  float factor = 1.0f;
};

struct LlamaConfig {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;  // default: num_attention_heads
  int head_dim = 0;             // default: hidden_size / num_attention_heads
  int vocab_size = 0;
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  int bos_token_id = 1;
  std::vector<int> eos_token_ids{2};
  bool tie_word_embeddings = false;
  std::optional<QuantizationConfig> quantization;
};

// Reads <dir>/config.json and, if present, <dir>/quantize_config.json. Errors name the file and
// the field: missing required field, wrong type, inconsistent sizes, unknown rope_scaling kind,
// hidden_act other than silu.
LlamaConfig load_config(const std::filesystem::path& dir);
LlamaConfig parse_config(const nlohmann::json& json, const std::string& source);

}  // namespace q4jit
