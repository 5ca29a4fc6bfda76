// Text generation on any Engine: prompt, then one token at a time, streaming text as it becomes
// complete, stopping at EOS, at a stop string or at the token limit.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/engine.hpp"
#include "model/sampling.hpp"
#include "model/tokenizer.hpp"

namespace q4jit {

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // generation stops when the text contains one
  bool stop_at_eos = true;
  bool add_bos = true;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  std::string text;         // generated text (up to, not including, a matched stop string)
  std::string stop_reason;  // "eos", "stop_string", "max_new_tokens", "max_positions"
  double prompt_seconds = 0;
  double generate_seconds = 0;
};

// on_text receives each newly complete piece of text, in order (never a stop string's text).
GenerateResult generate(Engine& engine, const Tokenizer& tokenizer, const std::string& prompt,
                        const GenerateOptions& options,
                        const std::function<void(std::string_view)>& on_text = {});

}  // namespace q4jit
