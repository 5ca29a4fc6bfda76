// Perplexity as ../shared/docs/PERPLEXITY.md defines it. perplexity_chunks() reads the data (JSONL:
// one record per chunk; plain text: sliding windows over the whole file's tokens); perplexity()
// scores each chunk from a fresh cache with one all-logits forward. "Characters" in the JSONL
// length filter are Unicode code points, as Python's len(); on the WikiText sample, bytes select
// the same first 100 records, so the goldens do not tell the two apart.
#include "model/perplexity.hpp"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace q4jit {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot read");
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(path.string() + ": cannot read");
  return buffer.str();
}

size_t count_code_points(const std::string& text) {
  size_t count = 0;
  for (const char byte : text) count += (static_cast<unsigned char>(byte) & 0xC0) != 0x80;
  return count;
}

bool limit_reached(const std::vector<std::vector<int32_t>>& chunks, int limit) {
  return limit > 0 && static_cast<int>(chunks.size()) >= limit;
}

std::vector<std::vector<int32_t>> jsonl_chunks(const Tokenizer& tokenizer, const fs::path& data,
                                               const PerplexityOptions& options, int chunk_size) {
  std::istringstream lines(read_file(data));
  std::vector<std::vector<int32_t>> chunks;
  std::string line;
  for (int number = 1; !limit_reached(chunks, options.chunks) && std::getline(lines, line);
       ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_object() || !record.contains("text") || !record["text"].is_string()) {
      throw Error(data.string() + ": line " + std::to_string(number) +
                  " is not a JSON object with a \"text\" string");
    }
    const auto& text = record["text"].get_ref<const std::string&>();
    if (count_code_points(text) <= static_cast<size_t>(std::max(options.min_length, 0))) continue;
    std::vector<int32_t> ids = tokenizer.encode(text, false);
    if (static_cast<int>(ids.size()) > chunk_size) ids.resize(chunk_size);
    chunks.push_back(std::move(ids));
  }
  return chunks;
}

std::vector<std::vector<int32_t>> text_chunks(const Tokenizer& tokenizer, const fs::path& data,
                                              const PerplexityOptions& options, int chunk_size) {
  if (options.overlap < 0 || options.overlap >= chunk_size) {
    throw Error(data.string() + ": overlap " + std::to_string(options.overlap) +
                " must be in [0, chunk size " + std::to_string(chunk_size) + ")");
  }
  const std::vector<int32_t> ids = tokenizer.encode(read_file(data), false);
  const size_t step = chunk_size - options.overlap;
  std::vector<std::vector<int32_t>> chunks;
  for (size_t start = 0; start < ids.size() && !limit_reached(chunks, options.chunks);
       start += step) {
    const size_t end = std::min(ids.size(), start + chunk_size);
    chunks.emplace_back(ids.begin() + start, ids.begin() + end);
    if (end == ids.size()) break;
  }
  return chunks;
}

// Sum over positions t of -log softmax(logits[t])[targets[t]]: fp32 logits, double sums.
double negative_log_likelihood(const std::vector<float>& logits, std::span<const int32_t> targets,
                               size_t vocab) {
  double sum = 0;
  for (size_t t = 0; t < targets.size(); ++t) {
    const float* row = logits.data() + t * vocab;
    if (targets[t] < 0 || static_cast<size_t>(targets[t]) >= vocab) {
      throw Error("perplexity: token id " + std::to_string(targets[t]) +
                  " is outside the model's vocabulary of " + std::to_string(vocab));
    }
    float max_logit = row[0];
    for (size_t v = 1; v < vocab; ++v) max_logit = std::max(max_logit, row[v]);
    double exp_sum = 0;
    for (size_t v = 0; v < vocab; ++v) exp_sum += std::exp(row[v] - max_logit);
    sum -= double(row[targets[t]] - max_logit) - std::log(exp_sum);
  }
  return sum;
}

}  // namespace

std::vector<std::vector<int32_t>> perplexity_chunks(const Tokenizer& tokenizer,
                                                    const fs::path& data,
                                                    const PerplexityOptions& options,
                                                    int max_positions) {
  int chunk_size = options.chunk_size;
  if (max_positions > 0) chunk_size = std::min(chunk_size, max_positions);
  if (chunk_size < 2) {
    throw Error(data.string() + ": chunk size " + std::to_string(chunk_size) +
                " leaves no token to score (need at least 2)");
  }
  auto chunks = data.extension() == ".jsonl" ? jsonl_chunks(tokenizer, data, options, chunk_size)
                                             : text_chunks(tokenizer, data, options, chunk_size);
  if (chunks.empty()) throw Error(data.string() + ": no chunks to score");
  return chunks;
}

PerplexityResult perplexity(Engine& engine, const std::vector<std::vector<int32_t>>& chunks,
                            const std::function<void(int, int)>& progress) {
  PerplexityResult result;
  const size_t vocab = engine.config().vocab_size;
  const int total = static_cast<int>(chunks.size());
  for (int index = 0; index < total; ++index) {
    const auto& chunk = chunks[index];
    if (chunk.size() >= 2) {
      engine.reset();
      const std::span<const int32_t> inputs(chunk.data(), chunk.size() - 1);
      const std::vector<float> logits = engine.forward(inputs, true);
      if (logits.size() != inputs.size() * vocab) {
        throw Error("perplexity: " + engine.device_name() + " returned " +
                    std::to_string(logits.size()) + " logits for " + std::to_string(inputs.size()) +
                    " tokens of vocabulary " + std::to_string(vocab));
      }
      result.nll_sum +=
          negative_log_likelihood(logits, std::span<const int32_t>(chunk).subspan(1), vocab);
      result.tokens_scored += static_cast<int64_t>(inputs.size());
      ++result.chunks;
    }
    if (progress) progress(index + 1, total);
  }
  if (result.tokens_scored == 0) throw Error("perplexity: no chunk has 2 or more tokens");
  result.perplexity = std::exp(result.nll_sum / static_cast<double>(result.tokens_scored));
  return result;
}

}  // namespace q4jit
