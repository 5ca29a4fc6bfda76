// What generation and perplexity need from a forward pass, whatever runs it: the CPU reference
// (model/ref/cpu_engine.hpp) or, later, the GPU runtime. An engine owns its KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace q4jit {

// Device memory an engine holds, in bytes (host bytes for the CPU engine); zeros when unknown.
struct MemoryUse {
  int64_t weights_bytes = 0;
  int64_t cache_bytes = 0;  // the KV cache at max_positions()
  int64_t workspace_bytes = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const LlamaConfig& config() const = 0;
  // "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)", ... for messages and --json output.
  virtual std::string device_name() const = 0;
  // Largest number of positions the cache holds (<= config().max_position_embeddings).
  virtual int max_positions() const = 0;
  // Positions already in the cache.
  virtual int position() const = 0;
  // Empties the cache.
  virtual void reset() = 0;

  // Runs tokens at positions position() .. position()+T-1 and appends them to the cache. Returns
  // fp32 logits: [T, vocab] when all_logits, else [1, vocab] for the last token. Error (naming the
  // limit) when position()+T > max_positions(), with the cache unchanged.
  virtual std::vector<float> forward(std::span<const int32_t> tokens, bool all_logits) = 0;

  // Greedy decoding: runs `token` (the next input, not yet in the cache), takes the argmax of its
  // logits (argmax() of sampling.hpp: the lowest id among equal maxima) as the next input, and so
  // on for at most `count` steps. on_token gets each chosen id in order, and returning false stops
  // there. Returns the chosen ids; the cache then holds `token` and each chosen id but the last
  // (position() grew by their number). An engine may run steps ahead of on_token (the GPU one
  // queues the next step before the host sees a token), so a stop can cost one step of work, but
  // never a position. Error, with the cache unchanged, when position() + count > max_positions().
  // The default runs forward() and argmax() per step.
  virtual std::vector<int32_t> decode_greedy(int32_t token, int count,
                                             const std::function<bool(int32_t)>& on_token = {});

  // What the engine holds now, for q4jit bench; the default reports nothing known.
  virtual MemoryUse memory_use() const { return {}; }

 protected:
  // decode_greedy's limit: Error (one line) when `count` steps do not fit from position().
  void check_greedy_steps(int count) const;
};

}  // namespace q4jit
