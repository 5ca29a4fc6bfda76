// The named shapes of `q4jit synth --preset`: Llama-2 7B, 13B and 70B as published (hidden,
// intermediate, layers, heads, KV heads, vocab 32000, 4096 positions) and the shapes of the
// repository's fixture. Shapes only: the weights are synth.cpp's, the quantization the caller's.
#include <utility>

#include "common/error.hpp"
#include "model/synth.hpp"

namespace q4jit {

namespace {

struct Preset {
  const char* name;
  int hidden, intermediate, layers, heads, kv_heads, vocab, max_positions;
};

// 70b is the only one with grouped-query attention (8 KV heads), as in Llama-2.
constexpr Preset kPresets[] = {
    {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096},
    {"llama-13b", 5120, 13824, 40, 40, 40, 32000, 4096},
    {"llama-70b", 8192, 28672, 80, 64, 8, 32000, 4096},
    {"fixture-like", 512, 1408, 6, 8, 4, 4096, 2048},
};

}  // namespace

std::vector<std::string> synth_preset_names() {
  std::vector<std::string> names;
  for (const Preset& preset : kPresets) names.emplace_back(preset.name);
  return names;
}

LlamaConfig synth_preset(const std::string& name) {
  for (const Preset& preset : kPresets) {
    if (name != preset.name) continue;
    LlamaConfig config;
    config.hidden_size = preset.hidden;
    config.intermediate_size = preset.intermediate;
    config.num_hidden_layers = preset.layers;
    config.num_attention_heads = preset.heads;
    config.num_key_value_heads = preset.kv_heads;
    config.head_dim = preset.hidden / preset.heads;
    config.vocab_size = preset.vocab;
    config.max_position_embeddings = preset.max_positions;
    config.rms_norm_eps = 1e-5f;
    config.rope_theta = 10000.0f;
    return config;
  }
  std::string known;
  for (const std::string& preset : synth_preset_names())
    known += (known.empty() ? "" : ", ") + preset;
  throw Error("preset '" + name + "': unknown (known: " + known + ")");
}

}  // namespace q4jit
