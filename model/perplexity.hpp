// Perplexity exactly as ../shared/docs/PERPLEXITY.md defines it (ExLlama's method): chunks from
// a JSONL file (one record, one chunk) or a plain-text file (sliding windows), a fresh cache per
// chunk, token-weighted mean of the next-token negative log-likelihood.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "common/error.hpp"  // the functions below report bad data with Error
#include "model/engine.hpp"
#include "model/tokenizer.hpp"

namespace q4jit {

struct PerplexityOptions {
  int chunk_size = 2048;  // capped at the engine's max positions
  int chunks = 100;       // at most this many chunks; <= 0: all
  int overlap = 0;        // plain text only: windows step by chunk_size - overlap
  int min_length = 50;    // JSONL only: records whose text has more characters than this
};

struct PerplexityResult {
  int chunks = 0;
  int64_t tokens_scored = 0;
  double nll_sum = 0;
  double perplexity = 0;
};

// Builds the chunks of token ids (without BOS). Format by extension: .jsonl is JSONL, anything
// else plain text. Error naming the file when unreadable, not JSONL, or yielding no chunk.
std::vector<std::vector<int32_t>> perplexity_chunks(const Tokenizer& tokenizer,
                                                    const std::filesystem::path& data,
                                                    const PerplexityOptions& options,
                                                    int max_positions);

// progress(chunks_done, chunks_total) after every chunk.
PerplexityResult perplexity(Engine& engine, const std::vector<std::vector<int32_t>>& chunks,
                            const std::function<void(int, int)>& progress = {});

}  // namespace q4jit
