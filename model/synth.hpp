// Writes random Llama checkpoints in the real formats (fp16, or GPTQ with any group size,
// act-order, symmetric or not), for tests and for benchmarks on real shapes with nothing
// downloaded. The weights are random but plausible (scales ~ 1/sqrt(K)); the model is useless.
#pragma once

#include <cstdint>
#include <filesystem>

#include "model/config.hpp"

namespace q4jit {

struct SynthSpec {
  LlamaConfig config;  // shapes; config.quantization decides fp16 vs GPTQ
  uint64_t seed = 1;
  int shards = 1;           // > 1 writes model.safetensors.index.json
  bool write_g_idx = true;  // GPTQ: write g_idx even when sequential (as AutoGPTQ does)
};

// A tiny configuration (hidden 64, 2 layers, vocab of the tokenizer given) for unit tests.
LlamaConfig tiny_config(int vocab_size);

// Writes config.json (+ quantize_config.json) and the shards into dir (created). The tokenizer is
// not written: copy one (tests use tests/fixtures/tokenizer.model).
void write_synthetic_model(const std::filesystem::path& dir, const SynthSpec& spec);

}  // namespace q4jit
