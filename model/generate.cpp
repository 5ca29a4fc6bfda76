// generate(): prompt prefill, then one token per forward, sampled by Sampler, decoded by
// StreamDecoder, with stop strings held back so that streamed text never shows any part of one.
// The EOS token ends generation and is not part of generated_ids.
#include "model/generate.hpp"

#include <algorithm>
#include <chrono>

#include "common/error.hpp"

namespace q4jit {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Text generated so far, how much of it was streamed, and the stop strings it watches for.
class StopStringFilter {
 public:
  StopStringFilter(const std::vector<std::string>& stop_strings,
                   const std::function<void(std::string_view)>& on_text)
      : on_text_(on_text) {
    for (const auto& stop : stop_strings) {
      if (!stop.empty()) stop_strings_.push_back(stop);
    }
  }

  // Adds text; returns true when a stop string is now complete (text is cut before it).
  bool add(const std::string& piece) {
    text_ += piece;
    if (const size_t match = first_match(); match != std::string::npos) {
      text_.resize(match);
      stream(text_.size());
      return true;
    }
    stream(text_.size() - partial_match_length());
    return false;
  }

  // Streams whatever was held back as a possible start of a stop string.
  void finish() { stream(text_.size()); }
  const std::string& text() const { return text_; }

 private:
  // Earliest position of any stop string; only the unstreamed tail can hold a new match.
  size_t first_match() const {
    size_t best = std::string::npos;
    for (const auto& stop : stop_strings_) {
      const size_t from = streamed_ > stop.size() ? streamed_ - stop.size() : 0;
      best = std::min(best, text_.find(stop, from));
    }
    return best;
  }

  // Longest suffix of the text that is a proper prefix of a stop string.
  size_t partial_match_length() const {
    size_t longest = 0;
    for (const auto& stop : stop_strings_) {
      for (size_t length = std::min(stop.size() - 1, text_.size()); length > longest; --length) {
        if (text_.compare(text_.size() - length, length, stop, 0, length) == 0) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }

  void stream(size_t until) {
    if (until <= streamed_) return;
    if (on_text_) on_text_(std::string_view(text_).substr(streamed_, until - streamed_));
    streamed_ = until;
  }

  std::vector<std::string> stop_strings_;
  const std::function<void(std::string_view)>& on_text_;
  std::string text_;
  size_t streamed_ = 0;
};

std::vector<int32_t> encode_prompt(const Engine& engine, const Tokenizer& tokenizer,
                                   const std::string& prompt, bool add_bos) {
  std::vector<int32_t> ids = tokenizer.encode(prompt, add_bos);
  if (ids.empty()) throw Error("prompt: empty (no BOS and no text), nothing to continue");
  if (static_cast<int>(ids.size()) > engine.max_positions()) {
    throw Error("prompt: " + std::to_string(ids.size()) + " tokens exceed the limit of " +
                std::to_string(engine.max_positions()) + " positions of " + engine.device_name());
  }
  return ids;
}

// Whether sampling is the plain argmax of the logits (greedy, no repetition penalty): then the
// engine's decode_greedy may choose the ids.
bool plain_greedy(const SamplingParams& sampling) {
  return (sampling.greedy || sampling.temperature <= 0.0f) && sampling.repetition_penalty == 1.0f;
}

bool is_eos(const LlamaConfig& config, int32_t id) {
  return std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) !=
         config.eos_token_ids.end();
}

}  // namespace

GenerateResult generate(Engine& engine, const Tokenizer& tokenizer, const std::string& prompt,
                        const GenerateOptions& options,
                        const std::function<void(std::string_view)>& on_text) {
  GenerateResult result;
  result.prompt_ids = encode_prompt(engine, tokenizer, prompt, options.add_bos);
  std::vector<int32_t> history = result.prompt_ids;
  Sampler sampler(options.sampling);
  StreamDecoder decoder(tokenizer);
  // The prompt goes through the decoder unseen, so that the continuation keeps the leading space
  // SentencePiece strips only at the start of a text ("In the" + " beginning").
  for (const int32_t id : result.prompt_ids) decoder.push(id);
  StopStringFilter filter(options.stop_strings, on_text);

  engine.reset();
  const auto prompt_start = Clock::now();
  std::vector<float> logits = engine.forward(result.prompt_ids, false);
  result.prompt_seconds = seconds_since(prompt_start);

  const auto generate_start = Clock::now();
  result.stop_reason = "max_new_tokens";
  // Takes a chosen id: false when generation ends with it (or before it, at EOS).
  const auto accept = [&](int32_t id) {
    if (options.stop_at_eos && is_eos(engine.config(), id)) {
      result.stop_reason = "eos";
      return false;
    }
    result.generated_ids.push_back(id);
    history.push_back(id);
    if (filter.add(decoder.push(id))) {
      result.stop_reason = "stop_string";
      return false;
    }
    return static_cast<int>(result.generated_ids.size()) < options.max_new_tokens;
  };
  int32_t id = sampler.sample(logits, history);
  bool going = options.max_new_tokens > 0 && accept(id);
  while (going) {
    if (engine.position() >= engine.max_positions()) {
      result.stop_reason = "max_positions";
      break;
    }
    if (plain_greedy(options.sampling)) {
      // The engine chooses the ids itself (on the GPU: without a host round trip per token).
      const int steps = std::min(options.max_new_tokens - int(result.generated_ids.size()),
                                 engine.max_positions() - engine.position());
      id = engine.decode_greedy(id, steps, [&](int32_t next) { return going = accept(next); })
               .back();
      continue;
    }
    logits = engine.forward(std::span<const int32_t>(&id, 1), false);
    id = sampler.sample(logits, history);
    going = accept(id);
  }
  if (result.stop_reason != "stop_string") {
    // An incomplete character at the very end may still complete a stop string.
    if (filter.add(decoder.flush())) result.stop_reason = "stop_string";
    filter.finish();
  }
  result.generate_seconds = seconds_since(generate_start);
  result.text = filter.text();
  return result;
}

}  // namespace q4jit
