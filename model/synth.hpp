// Writes random Llama checkpoints in the real formats (fp16, or GPTQ with any group size,
// act-order, symmetric or not), for tests and for benchmarks on real shapes with nothing
// downloaded. The weights are random but plausible (scales ~ 1/sqrt(K)); the model is useless.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace q4jit {

struct SynthSpec {
  LlamaConfig config;  // shapes; config.quantization decides fp16 vs GPTQ
  uint64_t seed = 1;
  int shards = 1;           // > 1 writes model.safetensors.index.json
  bool write_g_idx = true;  // GPTQ: write g_idx even when sequential (as AutoGPTQ does)
  // Act-order: projections that read the same input (q, k, v; gate, up) share one permutation,
  // as in real GPTQ checkpoints; false gives each its own (tests of unfused projections).
  bool shared_act_order = true;
  // Called after each tensor is produced, with the tensor bytes done so far and in all.
  std::function<void(int64_t done_bytes, int64_t total_bytes)> progress;
};

// A tiny configuration (hidden 64, 2 layers, vocab of the tokenizer given) for unit tests.
LlamaConfig tiny_config(int vocab_size);

// The shapes `q4jit synth --preset` offers, unquantized (set config.quantization): llama-7b,
// llama-13b, llama-70b (Llama-2: vocab 32000, 4096 positions; 70b with 8 KV heads) and
// fixture-like (the shapes of models/fixture: 6 layers, hidden 512, vocab 4096).
std::vector<std::string> synth_preset_names();
// Error naming the preset and listing the known ones when `name` is not one of them.
LlamaConfig synth_preset(const std::string& name);

// Writes config.json (+ quantize_config.json) and the shards into dir (created). The tokenizer is
// not written: copy one (tests use tests/fixtures/tokenizer.model).
void write_synthetic_model(const std::filesystem::path& dir, const SynthSpec& spec);

// Writes a small SentencePiece tokenizer of exactly vocab_size pieces (>= 512) to file: BPE with
// byte fallback in Llama's layout (unk 0, <s> 1, </s> 2), trained on a built-in English text, the
// rest of the vocabulary control pieces that text never encodes to and that decode to nothing. The
// same vocab_size gives the same bytes.
void write_synthetic_tokenizer(const std::filesystem::path& file, int vocab_size);

}  // namespace q4jit
