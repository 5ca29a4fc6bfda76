// Choosing the next token from logits: greedy, or temperature with top-k, top-p, min-p and
// typical filtering, and a repetition penalty over a window of recent tokens. Seeded, so a run
// with the same seed on the same logits picks the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace q4jit {

struct SamplingParams {
  bool greedy = false;
  float temperature = 0.8f;         // <= 0 means greedy
  int top_k = 40;                   // 0: off
  float top_p = 0.95f;              // 1: off
  float min_p = 0.0f;               // 0: off; keeps tokens with p >= min_p * p_max
  float typical = 1.0f;             // 1: off; locally typical sampling mass
  float repetition_penalty = 1.0f;  // 1: off; divides positive logits, multiplies negative ones
  int repetition_range = 256;       // how many recent tokens the penalty looks at; 0: all
  uint64_t seed = 0;
};

// The index of the largest logit: the lowest among equal maxima; NaN loses to every number (all
// NaN: the last index). The greedy choice, here and in the GPU's greedy_token kernel.
int32_t argmax(std::span<const float> logits);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits [vocab] are modified in place (penalty, temperature); history = prompt + generated.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace q4jit
